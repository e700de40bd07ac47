"""The emulator's servers: a pool of Triton servers, each on a model repository of its own, where every
target's Triton models keep the names its artifact gives them, so that code calling a model by name (a
python step's `pb_utils.InferenceRequest(model_name="add_sub", ...)`, BLS) finds it unchanged.

A target goes into the first server that holds none of its model names, else into a new server; the
first server is started with the pool and kept, every other one is stopped once it holds no target. So
digits_1 and digits_2, which both hold `preprocess`, are served side by side, each by a server of its own.

What SageMaker's Triton does instead (its MME front, `src/sagemaker_server.cc` in
triton-inference-server/server; its entrypoint `docker/sagemaker/serve` starts tritonserver with
`--model-namespacing=true` since https://github.com/triton-inference-server/server/pull/5540): each
TargetModel's archive is registered as a model repository of its own, one namespace; the top-level model
(the ensemble, or with none the model directory listed last) is renamed to the TargetModel and loaded,
with an ensemble's steps; every other model keeps its directory's name. Tried on this Triton (2.51, its
`--allow-sagemaker` front, namespacing on): two archives whose ensembles both step through `bls` served
side by side; but a model that a python step calls by name and no ensemble step names is not loaded, and
the call answers "Model 'add_sub' is not ready"; and a name loaded in two namespaces is ambiguous to such
a call (Triton core's `FindModelIdentifier`: "There are 2 identifiers of model ..."), answered the same
way. Namespacing resolves ensemble steps per archive, not a python step's call, so it cannot serve BLS
side by side; hence a pool. The emulator loads every Triton model of a target, as replay does.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from packager.scratch import scratch_dir
from packager.triton import Launcher, Ports, Server


@dataclass(eq=False)
class Slot:
    """One running server of the pool, its model repository, and the model names each target placed in it
    holds (a target's names are held from its placement until its files are gone)."""

    server: Server
    repository: Path
    stop: ExitStack
    holds: dict[str, frozenset[str]] = field(default_factory=dict)

    def takes(self, names: frozenset[str]) -> bool:
        """Whether a target holding `names` can go here: no name of it is held already."""
        return all(names.isdisjoint(held) for held in self.holds.values())


class ServerPool:
    """Servers that `launcher` starts on empty repositories of their own (explicit model control, the
    server's interpreter lent since targets are not known yet): the first on `ports`, later ones on free
    ports, each logging beside `log_path` (`mme-serve.log`, then `mme-serve-2.log`, ...)."""

    def __init__(self, launcher: Launcher, log_path: Path, ports: Ports) -> None:
        self.launcher = launcher
        self.log_path = log_path
        self.ports = ports
        self.slots: list[Slot] = []  # the first is kept while the pool runs
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    def place(self, target: str, names: frozenset[str]) -> tuple[Slot, float]:
        """The first server that holds none of `names` (or a new one), with the names held there for
        `target`; and the seconds a new server took to start (0 when none was needed)."""
        with self._lock:
            for slot in self.slots:
                if slot.takes(names):
                    slot.holds[target] = names
                    return slot, 0.0
        started = time.monotonic()
        slot = self._start()
        slot.holds[target] = names
        with self._lock:
            self.slots.append(slot)
        return slot, time.monotonic() - started

    def release(self, target: str, slot: Slot) -> None:
        """`target`'s names no longer held in `slot` (its files are gone); a server other than the first is
        stopped once it holds no target."""
        with self._lock:
            slot.holds.pop(target, None)
            idle = not slot.holds and slot is not self.slots[0]
            if idle:
                self.slots.remove(slot)
        if idle:
            slot.stop.close()

    def exited(self) -> Server | None:
        """A server of the pool that is no longer running, if any."""
        with self._lock:
            return next((slot.server for slot in self.slots if not slot.server.alive()), None)

    def _start(self) -> Slot:
        """A new server on a new empty repository."""
        number = next(self._numbers)
        suffix = "" if number == 1 else f"-{number}"
        log = self.log_path.with_name(f"{self.log_path.stem}{suffix}{self.log_path.suffix}")
        with ExitStack() as stack:
            repository = stack.enter_context(scratch_dir("mme-repo"))
            repository.chmod(0o755)  # a server in a container reads it as another user
            ports = self.ports if number == 1 else Ports()
            server = stack.enter_context(
                self.launcher.start(repository, log, lend_interpreter=True, ports=ports)
            )
            return Slot(server, repository, stack.pop_all())

    def close(self) -> None:
        """Stop every server and delete its repository."""
        with self._lock:
            slots, self.slots = self.slots, []
        for slot in reversed(slots):
            slot.stop.close()


@contextmanager
def server_pool(launcher: Launcher, log_path: Path, ports: Ports = Ports()) -> Iterator[ServerPool]:
    """A pool with its first server started; on exit every server is stopped and its repository deleted."""
    pool = ServerPool(launcher, log_path, ports)
    pool.slots.append(pool._start())
    try:
        yield pool
    finally:
        pool.close()
