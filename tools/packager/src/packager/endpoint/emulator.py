"""A SageMaker multi-model endpoint, emulated on one real Triton: targets fetched from a store on their
first request, verified, staged under names of their own and loaded; least-recently-used targets unloaded
when a memory limit would be exceeded; a load past the deadline answered ModelNotReadyException while it
goes on.

Memory is measured as the bytes a target's staged models hold on disk (`staging.staged_bytes`): known
before the load, so room is made first (as an MME does), the same for every launcher (a container's RSS
is not this process's to read), and free of the noise an RSS delta has while other targets load and
serve at once. Python steps cost more than their files once their stubs run; the measure is a floor.
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from packager.artifacts import ArtifactError, triton_models_in, verified
from packager.endpoint.errors import ModelError, ModelNotReady, StoreUnavailable, TargetInvalid
from packager.endpoint.forward import Answer, infer
from packager.endpoint.limits import check_target, not_a_key
from packager.endpoint.sizes import shown_size
from packager.endpoint.staging import SEPARATOR, namespace, stage_models, staged_bytes, staged_name
from packager.errors import EnvironmentFailure
from packager.modeldir import TritonModel
from packager.release.stores import ArtifactStore, KeyOutsideStore
from packager.scratch import scratch_dir
from packager.triton import (
    LOAD_TIMEOUT,
    Launcher,
    Ports,
    Server,
    ServerError,
    UnservableModel,
    check_backends,
    fit_devices,
    load_all,
    refuse_gpus,
)

NOT_READY_AFTER = 60.0  # SageMaker answers ModelNotReadyException to a load that takes longer


@dataclass
class ColdStart:
    """What one target's first request cost, step by step (seconds). Verifying and extracting are one pass
    (every file is checked as it is written), so they are timed together."""

    target: str
    model: str  # the top-level model, as the server knows it
    bytes: int
    download_s: float
    verify_extract_s: float
    stage_s: float
    load_s: float
    evict_s: float = 0.0  # unloading least-recently-used targets to make room
    first_inference_s: float | None = None
    evicted: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """The whole cold start: download to the first inference's answer."""
        steps = (self.download_s, self.verify_extract_s, self.stage_s, self.evict_s, self.load_s)
        return sum(steps) + (self.first_inference_s or 0.0)

    def to_json(self) -> dict[str, Any]:
        return {"event": "cold_start", **asdict(self)}

    def line(self) -> str:
        first = f"{self.first_inference_s:.3f} s" if self.first_inference_s is not None else "-"
        steps = (
            f"download {self.download_s:.2f} s, verify+extract {self.verify_extract_s:.2f} s, "
            f"stage {self.stage_s:.2f} s, evict {self.evict_s:.2f} s, load {self.load_s:.2f} s"
        )
        return f"cold start {self.target} ({shown_size(self.bytes)}): {steps}, first inference {first}"


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
    """A target loaded in the server: its models (ensembles first: the unload order) and what it holds."""

    target: str
    top: str
    models: list[str]
    directories: list[Path]
    bytes: int
    cold_start: ColdStart
    in_flight: int = 0
    first_claimed: bool = False


class Emulator:
    """Targets loaded on demand in one running server, as its `settings` say."""

    def __init__(
        self,
        store: ArtifactStore,
        server: Server,
        launcher: Launcher,
        directories: tuple[Path, Path],
        settings: Settings,
        listener: Callable[[Event], None],
    ) -> None:
        self.store = store
        self.server = server
        self.launcher = launcher
        self.repository, self.downloads = directories  # the server's model repository; archives in transit
        self.settings = settings
        self.listener = listener
        self.cold_starts: list[ColdStart] = []
        self.evictions: list[Eviction] = []
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, Loaded] = OrderedDict()  # least recently used first
        self._loading: dict[str, tuple[Future[Loaded], float]] = {}  # the load and its deadline
        self._reserved: dict[str, int] = {}  # bytes of loads between making room and finishing
        self._loads = itertools.count(1)  # each load's number: a reload never meets an unload's leftovers
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mme-load")

    def loaded_targets(self) -> list[str]:
        """The targets loaded now, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def invoke(self, target: str | None, body: bytes, content_type: str | None) -> Answer:
        """Answer one InvokeEndpoint request: load the target if it is not loaded, then send the body to its
        top-level model. The target must be a key inside the store (`check_target`)."""
        loaded = self._acquire(check_target(target))
        try:
            with self._lock:
                first, loaded.first_claimed = not loaded.first_claimed, True
            started = time.monotonic()
            try:
                return infer(self.server.endpoints.http, loaded.top, body, content_type)
            finally:
                if first:
                    loaded.cold_start.first_inference_s = time.monotonic() - started
                    self.listener(loaded.cold_start)
        finally:
            with self._lock:
                loaded.in_flight -= 1

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
            self.cold_starts.append(loaded.cold_start)
            return loaded
        finally:
            with self._lock:
                self._loading.pop(target, None)
                self._reserved.pop(target, None)

    def _fetch_and_load(self, target: str) -> Loaded:
        """Download, verify and extract (one pass), stage, make room, load: each step timed."""
        prefix = f"{namespace(target)}-{next(self._loads)}"
        archive = self.downloads / f"{prefix}.tar.gz"
        marks = [time.monotonic()]
        recorded = self._download(target, archive)
        marks.append(time.monotonic())
        try:
            with verified(archive, self.settings.public_key, recorded) as (artifact, unpacked):
                marks.append(time.monotonic())
                staged = self._stage(unpacked, prefix)
        except (ArtifactError, UnservableModel) as error:
            raise TargetInvalid(f"{target} cannot be served: {error}") from None
        finally:
            archive.unlink(missing_ok=True)
        directories = [model.directory for model in staged.values()]
        size = staged_bytes(directories)
        top = staged_name(prefix, str(artifact.manifest["top_model"]))
        ensembles_first = sorted(staged, key=lambda name: (not staged[name].is_ensemble, name))
        cold = ColdStart(target, top, size, 0, 0, 0, 0)
        loaded = Loaded(target, top, ensembles_first, directories, size, cold)
        marks.append(time.monotonic())
        try:
            cold.evicted = [victim.target for victim in self._make_room(target, size)]
            marks.append(time.monotonic())
            load_all(self.server, staged, self.settings.load_timeout)
        except ServerError as error:
            self._remove(loaded)
            raise ModelError(f"{target} failed to load: {error}", 500, str(error).splitlines()[0]) from None
        except BaseException:
            self._remove(loaded)
            raise
        marks.append(time.monotonic())
        steps = [later - earlier for earlier, later in zip(marks, marks[1:])]
        cold.download_s, cold.verify_extract_s, cold.stage_s, cold.evict_s, cold.load_s = steps
        return loaded

    def _stage(self, unpacked: Path, prefix: str) -> dict[str, TritonModel]:
        """The target's models (unpacked there) staged in the repository, checked against the server's
        backends and devices first (instance groups asking for a GPU run as KIND_CPU where the launcher
        says `gpu_as_cpu`); none of them left there when staging fails."""
        models = triton_models_in(unpacked)
        check_backends(models, self.launcher)
        refuse_gpus(unpacked, models, self.launcher)
        try:
            staged = stage_models(models, self.repository, prefix)
            fit_devices(self.repository, staged, self.launcher)
            return staged
        except BaseException:
            for partial in self.repository.glob(f"{prefix}{SEPARATOR}*"):
                shutil.rmtree(partial, ignore_errors=True)
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
        """Unload a target's models (ensembles first) and delete their files."""
        for model in loaded.models:
            try:
                self.server.unload(model)
            except ServerError:
                pass  # never loaded (a failed load), or the server is going away: its files go regardless
        for directory in loaded.directories:
            shutil.rmtree(directory, ignore_errors=True)

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
    log_path: Path,
    settings: Settings = Settings(),
    ports: Ports = Ports(),
    listener: Callable[[Event], None] = lambda event: None,
) -> Iterator[Emulator]:
    """An emulator on a server that `launcher` starts on an empty repository of its own (explicit model
    control, the server's interpreter lent since targets are not known yet); on exit everything is
    unloaded, the server stopped, and the repository and downloads deleted."""
    with ExitStack() as stack:
        repository = stack.enter_context(scratch_dir("mme-repo"))
        repository.chmod(0o755)  # a server in a container reads it as another user
        downloads = stack.enter_context(scratch_dir("mme-downloads"))
        server = stack.enter_context(launcher.start(repository, log_path, True, ports))
        emulator = Emulator(store, server, launcher, (repository, downloads), settings, listener)
        stack.callback(emulator.close)
        yield emulator
