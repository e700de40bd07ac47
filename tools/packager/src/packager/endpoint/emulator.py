"""A SageMaker multi-model endpoint, emulated on real Triton servers: targets fetched from a store on their
first request, verified, staged under their own model names in a server of the pool that holds none of
them (`servers`) and loaded as SageMaker's Triton front loads one (its top-level model, which loads the
ensemble's steps; a model only called by name is loaded by whatever loads it); least-recently-used targets unloaded when a memory limit would be exceeded;
a load past the deadline answered ModelNotReadyException while it goes on.

Memory is measured as the bytes a target's staged models hold on disk (`staging.staged_bytes`): known
before the load, so room is made first (as an MME does), the same for every launcher (a container's RSS
is not this process's to read), and free of the noise an RSS delta has while other targets load and
serve at once. Python steps cost more than their files once their stubs run; the measure is a floor. The
limit is the endpoint's, across every server of the pool.
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packager.artifacts import ArtifactError, triton_models_in, verified
from packager.endpoint.errors import ModelError, ModelNotReady, StoreUnavailable, TargetInvalid
from packager.endpoint.forward import Answer, infer, stream_infer
from packager.endpoint.limits import check_target, not_a_key
from packager.endpoint.servers import ServerPool, Slot, server_pool
from packager.endpoint.sizes import shown_size
from packager.endpoint.staging import stage_models, staged_bytes
from packager.errors import EnvironmentFailure
from packager.modeldir import Tensor, TritonModel
from packager.release.stores import ArtifactStore, KeyOutsideStore
from packager.scratch import scratch_dir
from packager.triton import (
    LOAD_TIMEOUT,
    Launcher,
    Ports,
    ServerError,
    ServerStartError,
    UnservableModel,
    check_backends,
    fit_devices,
    refuse_gpus,
)

NOT_READY_AFTER = 60.0  # SageMaker answers ModelNotReadyException to a load that takes longer


# A cold start's steps before its first inference, in order, each timed as `<step>_s`.
STEPS = ("download", "verify_extract", "evict", "server_start", "stage", "load")
WORDS = {
    "verify_extract": "verify+extract",
    "server_start": "server start",
    "first_inference": "first inference",
}
SHORT = 300  # characters of an error a cold start repeats


@dataclass
class ColdStart:
    """What one target's first request cost, step by step (seconds; see STEPS), and the step that failed,
    if one did. Verifying and extracting are one pass (every file is checked as it is written), so they are
    timed together; `server_start_s` is 0 unless the target needed a new server (`servers`)."""

    target: str
    model: str = ""  # the top-level model
    bytes: int = 0
    download_s: float = 0.0
    verify_extract_s: float = 0.0
    evict_s: float = 0.0  # unloading least-recently-used targets to make room
    server_start_s: float = 0.0
    stage_s: float = 0.0
    load_s: float = 0.0
    first_inference_s: float | None = None
    first_inference_status: int | None = None  # the HTTP status Triton answered the first request with
    evicted: list[str] = field(default_factory=list)
    failed: str | None = None  # the step that failed: one of STEPS, or "first_inference"
    error: str | None = None  # why, in one short line

    @property
    def seconds(self) -> float:
        """The whole cold start: download to the first inference's answer."""
        steps: float = sum(getattr(self, f"{step}_s") for step in STEPS)
        return steps + (self.first_inference_s or 0.0)

    def timed(self, marks: list[float]) -> None:
        """Each step's seconds, from the clock's readings as one step after another ended (as far as they
        went)."""
        for step, earlier, later in zip(STEPS, marks, marks[1:], strict=False):
            setattr(self, f"{step}_s", later - earlier)

    def fail(self, step: str, error: Exception) -> None:
        """Record that `step` (one of STEPS, or "first_inference") failed with `error`: its first line (of
        Triton's message, for a ModelError)."""
        message = error.original_message if isinstance(error, ModelError) else str(error)
        line = (message.strip().splitlines() or [""])[0]
        self.failed, self.error = step, line if len(line) <= SHORT else line[: SHORT - 3] + "..."

    def to_json(self) -> dict[str, Any]:
        return {"event": "cold_start", **asdict(self)}

    def line(self) -> str:
        ran = STEPS[: STEPS.index(self.failed) + 1] if self.failed in STEPS else STEPS
        steps = ", ".join(
            f"{WORDS.get(step, step)} {getattr(self, f'{step}_s'):.2f} s"
            for step in ran
            if step != "server_start" or self.server_start_s  # shown when a new server was needed
        )
        head = f"cold start {self.target} ({shown_size(self.bytes)}): {steps}"
        if self.failed == "first_inference":
            return (
                f"{head}, first inference FAILED with status {self.first_inference_status} after "
                f"{self.first_inference_s or 0.0:.3f} s: {self.error}"
            )
        if self.failed is not None:
            return f"{head}: {WORDS.get(self.failed, self.failed)} FAILED: {self.error}"
        first = f"{self.first_inference_s:.3f} s" if self.first_inference_s is not None else "-"
        return f"{head}, first inference {first}"


@dataclass(frozen=True)
class Eviction:
    """A target unloaded to make room for another."""

    target: str
    bytes: int
    for_target: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "eviction", **asdict(self)}

    def line(self) -> str:
        return f"evicted {self.target} ({shown_size(self.bytes)}) to make room for {self.for_target}"


Event = ColdStart | Eviction


@dataclass
class Settings:
    """How an emulator serves: the key signatures must verify with, the memory limit (bytes; None: none),
    how long a request waits for a load before ModelNotReadyException, and how long one model's load may
    take. `memory_limit` and `not_ready_after` may be changed while it runs; they apply from the next load."""

    public_key: Path | None = None
    memory_limit: int | None = None
    not_ready_after: float = NOT_READY_AFTER
    load_timeout: float = LOAD_TIMEOUT


@dataclass
class Loaded:
    """A target placed in a server of the pool: its models (ensembles first: the unload order), the server
    (`slot`) that holds them, and what they hold on disk."""

    target: str
    top: str
    models: list[str]
    slot: Slot
    bytes: int
    cold_start: ColdStart
    in_flight: int = 0
    first_claimed: bool = False

    @property
    def directories(self) -> list[Path]:
        return [self.slot.repository / name for name in self.models]


class Emulator:
    """Targets loaded on demand in the servers of a pool, as its `settings` say."""

    def __init__(
        self,
        store: ArtifactStore,
        servers: ServerPool,
        *,
        downloads: Path,
        settings: Settings,
        listener: Callable[[Event], None],
    ) -> None:
        self.store = store
        self.servers = servers
        self.downloads = downloads  # archives in transit
        self.settings = settings
        self.listener = listener
        self.cold_starts: list[ColdStart] = []
        self.evictions: list[Eviction] = []
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, Loaded] = OrderedDict()  # least recently used first
        self._loading: dict[str, tuple[Future[Loaded], float]] = {}  # the load and its deadline
        self._reserved: dict[str, int] = {}  # bytes of loads between making room and finishing
        self._downloads = itertools.count(1)  # each download's file name
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mme-load")

    def loaded_targets(self) -> list[str]:
        """The targets loaded now, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def invoke(
        self,
        target: str | None,
        body: bytes,
        content_type: str | None,
        *,
        stream: Sequence[Tensor] | None = None,
    ) -> Answer:
        """Answer one InvokeEndpoint request: load the target if it is not loaded, then send the body to its
        top-level model (`stream`: these inputs to a decoupled one over gRPC streaming instead, as only the
        cold-start check does). The target must be a key inside the store (`check_target`)."""
        loaded = self._acquire(check_target(target))
        try:
            with self._lock:
                first, loaded.first_claimed = not loaded.first_claimed, True
            if first:
                return self._first_inference(loaded, body, content_type, stream)
            return self._infer(loaded, body, content_type, stream)
        finally:
            with self._lock:
                loaded.in_flight -= 1

    def _infer(
        self, loaded: Loaded, body: bytes, content_type: str | None, stream: Sequence[Tensor] | None
    ) -> Answer:
        """Send one request's body to the target's top-level model, in the server that holds it (`stream`:
        these inputs, over gRPC streaming)."""
        if stream is not None:
            return stream_infer(loaded.slot.server.endpoints.grpc, loaded.top, stream)
        return infer(loaded.slot.server.endpoints.http, loaded.top, body=body, content_type=content_type)

    def _first_inference(
        self, loaded: Loaded, body: bytes, content_type: str | None, stream: Sequence[Tensor] | None
    ) -> Answer:
        """The target's first request, timed into its cold start, which is then reported: done, or failed
        with the status Triton answered."""
        cold = loaded.cold_start
        started = time.monotonic()
        try:
            answer = self._infer(loaded, body, content_type, stream)
            cold.first_inference_status = 200
            return answer
        except ModelError as error:
            cold.first_inference_status = error.original_status
            cold.fail("first_inference", error)
            raise
        finally:
            cold.first_inference_s = time.monotonic() - started
            self.listener(cold)

    def _acquire(self, target: str) -> Loaded:
        """The loaded target, counted as serving a request (never evicted while it does); its load started
        or joined, and waited for until the load's deadline."""
        while True:
            with self._lock:
                loaded = self._loaded.get(target)
                if loaded is not None:
                    loaded.in_flight += 1
                    self._loaded.move_to_end(target)
                    return loaded
                if target not in self._loading:
                    deadline = time.monotonic() + self.settings.not_ready_after
                    self._loading[target] = (self._executor.submit(self._load, target), deadline)
                future, deadline = self._loading[target]
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise ModelNotReady(
                    f"{target} is still loading after {self.settings.not_ready_after:g} s; try again shortly"
                ) from None

    def _load(self, target: str) -> Loaded:
        """Fetch, verify, stage and load one target (on a thread of its own, so that it goes on past the
        deadline); the outcome is recorded under the lock whatever it is."""
        try:
            loaded = self._fetch_and_load(target)
            with self._lock:
                self._loaded[target] = loaded
            return loaded
        finally:
            with self._lock:
                self._loading.pop(target, None)
                self._reserved.pop(target, None)

    def _fetch_and_load(self, target: str) -> Loaded:
        """Download, then the rest of the cold start (`_unpack_and_load`), recorded whether it succeeds or
        fails (a download that fails is a refusal, not a cold start: there was nothing to load)."""
        archive = self.downloads / f"{next(self._downloads)}.tar.gz"
        marks = [time.monotonic()]
        try:
            recorded = self._download(target, archive)
            marks.append(time.monotonic())
            cold = ColdStart(target)
            try:
                return self._unpack_and_load(target, archive, recorded, cold, marks)
            except Exception as error:
                cold.fail(STEPS[len(marks) - 1], error)
                raise
            finally:
                cold.timed(marks)
                self.cold_starts.append(cold)
                if cold.failed is not None:  # else it is reported with its first inference
                    self.listener(cold)
        finally:
            archive.unlink(missing_ok=True)

    def _unpack_and_load(
        self, target: str, archive: Path, recorded: str | None, cold: ColdStart, marks: list[float]
    ) -> Loaded:
        """Verify and extract (one pass), make room, place the target in a server (starting one if none
        can hold its names), stage and load it: the clock read into `marks` as each step ends."""
        try:
            with verified(archive, self.settings.public_key, recorded) as (artifact, unpacked):
                marks.append(time.monotonic())
                models = triton_models_in(unpacked)
                check_backends(models, self.servers.launcher)
                refuse_gpus(unpacked, models, self.servers.launcher)
                cold.model = str(artifact.manifest["top_model"])
                cold.bytes = staged_bytes([model.directory for model in models.values()])
                cold.evicted = [victim.target for victim in self._make_room(target, cold.bytes)]
                marks.append(time.monotonic())
                loaded, start_s = self._placed(target, models, cold)
                marks.append(marks[-1] + start_s)  # the new server's start; placing is counted as staging
                self._stage(models, loaded)
                marks.append(time.monotonic())
        except (ArtifactError, UnservableModel) as error:
            raise TargetInvalid(f"{target} cannot be served: {error}") from None
        try:
            # As SageMaker's front loads a target: its top-level model, which loads its ensemble steps;
            # a model called only by name is loaded by whatever loads it (see validation.calls).
            loaded.slot.server.load(loaded.top, self.settings.load_timeout)
        except ServerError as error:
            self._remove(loaded)
            raise ModelError(f"{target} failed to load: {error}", 500, str(error).splitlines()[0]) from None
        except BaseException:
            self._remove(loaded)
            raise
        marks.append(time.monotonic())
        return loaded

    def _placed(self, target: str, models: dict[str, TritonModel], cold: ColdStart) -> tuple[Loaded, float]:
        """The target placed in the first server that holds none of its model names, or a new one (and the
        seconds its start took, 0 when none was needed)."""
        try:
            slot, start_s = self.servers.place(target, frozenset(models))
        except ServerStartError as error:
            message = str(error).splitlines()[0]
            raise ModelError(
                f"{target} failed to load: no server started for it: {error}", 500, message
            ) from None
        ensembles_first = sorted(models, key=lambda name: (not models[name].is_ensemble, name))
        return Loaded(target, cold.model, ensembles_first, slot, cold.bytes, cold), start_s

    def _stage(self, models: dict[str, TritonModel], loaded: Loaded) -> None:
        """The target's models staged in its server's repository (instance groups asking for a GPU run as
        KIND_CPU in the staged copy where the launcher says `gpu_as_cpu`); none of them left there (and its
        names released) when staging fails."""
        try:
            staged = stage_models(models, loaded.slot.repository)
            fit_devices(loaded.slot.repository, staged, self.servers.launcher)
        except BaseException:
            self._remove(loaded)
            raise

    def _download(self, target: str, archive: Path) -> str | None:
        """Download the target's archive; the sha256 the store recorded when it was published, if any."""
        try:
            stored = self.store.head(target)
            if stored is None:
                raise TargetInvalid(f"no model {target} in {self.store.uri}")
            self.store.download(target, archive)
        except KeyOutsideStore:
            raise not_a_key(target, "it resolves outside the store") from None
        except EnvironmentFailure as error:
            raise StoreUnavailable(f"could not fetch {target}: {error}") from None
        return stored.metadata.get("sha256")

    def _make_room(self, target: str, size: int) -> list[Loaded]:
        """Unload least-recently-used targets until `size` more bytes fit the memory limit (a target serving
        a request is never unloaded, so the limit may be passed while one does)."""
        limit = self.settings.memory_limit
        if limit is not None and size > limit:
            raise TargetInvalid(
                f"{target} needs {shown_size(size)}, more than the memory limit ({shown_size(limit)})"
            )
        victims: list[Loaded] = []
        with self._lock:
            used = sum(loaded.bytes for loaded in self._loaded.values()) + sum(self._reserved.values())
            for name, loaded in list(self._loaded.items()):
                if limit is None or used + size <= limit:
                    break
                if loaded.in_flight == 0:
                    victims.append(self._loaded.pop(name))
                    used -= loaded.bytes
            self._reserved[target] = size
        for victim in victims:
            self._remove(victim)
            eviction = Eviction(victim.target, victim.bytes, target)
            self.evictions.append(eviction)
            self.listener(eviction)
        return victims

    def _remove(self, loaded: Loaded) -> None:
        """Unload a target's models (ensembles first), delete their files, then free its names in its server
        (which stops when it holds no target and is not the first)."""
        for model in loaded.models:
            try:
                loaded.slot.server.unload(model)
            except ServerError:
                pass  # never loaded (a failed load), or the server is going away: its files go regardless
        for directory in loaded.directories:
            shutil.rmtree(directory, ignore_errors=True)
        self.servers.release(loaded.target, loaded.slot)

    def close(self) -> None:
        """Let loads in progress end, then unload every target and delete its files."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            targets = list(self._loaded.values())
            self._loaded.clear()
        for loaded in targets:
            self._remove(loaded)


@contextmanager
def emulating(
    store: ArtifactStore,
    launcher: Launcher,
    *,
    log_path: Path,
    settings: Settings | None = None,
    ports: Ports = Ports(),
    listener: Callable[[Event], None] = lambda event: None,
) -> Iterator[Emulator]:
    """An emulator on a pool of servers that `launcher` starts (the first at once, on `ports`, logging to
    `log_path`; see `servers`), serving as `settings` say (default: a Settings of its own, which may be
    changed while it runs); on exit everything is unloaded, every server stopped, and the repositories and
    downloads deleted."""
    with ExitStack() as stack:
        downloads = stack.enter_context(scratch_dir("mme-downloads"))
        servers = stack.enter_context(server_pool(launcher, log_path, ports))
        emulator = Emulator(
            store, servers, downloads=downloads, settings=settings or Settings(), listener=listener
        )
        stack.callback(emulator.close)
        yield emulator
