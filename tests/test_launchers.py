"""Every launcher against one contract: the local launcher (Triton sandboxed by bubblewrap) and the
container launcher (Triton in the runtime's image, through podman's Docker-API service in CI) through
their real parts, and the fake, which must behave as they do: start, load, infer; a refused load quotes
the log and the server serves on; a hung load is bounded by its timeout; a crashed server is reported; a
server that cannot start says why; a backend the server lacks is refused before it starts; and no path out
(a stop, an error, Ctrl-C) leaves anything behind. What only one launcher has (the sandbox, the orphan
sweep, the image, shm size) is tested in its own file."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest

from packager.modeldir import TritonModel, read_config
from packager.settings import DEFAULT_RUNTIME, Runtime
from packager.triton import (
    Launcher,
    Ports,
    Server,
    ServerError,
    ServerStartError,
    TritonServer,
    UnservableModel,
    free_ports,
    loaded,
)
from packager.triton.cleanup import group_members
from packager.triton.container import LABEL, OWNER_LABEL, ContainerLauncher, owner
from packager.triton.engine import connect
from packager.triton.fake import FakeLauncher, FakeServer
from packager.triton.local import LocalLauncher
from tests.conftest import doubler_repository, infer_doubler

CORPUS = Path(__file__).parent / "corpus"
EXITED = "Triton exited with status 1 while starting"
HUNG_AFTER = 3  # seconds: Triton 2.51 never finishes loading the `hung` model
# What Triton 2.51 answered loading the corpus's bad_dims model (tests/corpus/bad/bad_dims/case.toml),
# under the name `refused`: what the fake is told to answer.
REFUSAL = (
    "load failed for model 'refused': version 1 is at UNAVAILABLE state: Invalid argument: model input 'X' "
    "dimension must be integer >= 1, or -1 to indicate a variable-size dimension for refused;"
)


class Watch(Protocol):
    """What one server holds on this machine, to check that it leaves nothing behind."""

    def snapshot(self) -> list[str]:
        """What it holds now (never nothing while it runs: the check looks at something)."""

    def remaining(self) -> list[str]:
        """What is left of it."""


TRITON_DROPPINGS = ("/tmp/python_env_*", "/dev/shm/triton_python_backend_shm_region_*")


def _droppings(root: str = "") -> set[str]:
    """Triton's unpacked environments and python-backend shm regions, as seen below `root`."""
    return {path[len(root) :] for pattern in TRITON_DROPPINGS for path in glob.glob(root + pattern)}


class LocalLeftovers:
    """What a local server could leave behind on the host: its processes, and Triton's unpacked environments
    and shm regions, which its sandbox keeps in a private /tmp and /dev/shm."""

    def __init__(self, server: Server) -> None:
        assert isinstance(server, TritonServer)
        self.group = server.process.pid  # type: ignore[attr-defined]
        self.on_host = _droppings()
        self.inside: set[str] = set()

    def snapshot(self) -> list[str]:
        """What the server's processes see under /tmp and /dev/shm now (through /proc/<pid>/root): the python
        backend's shm region at least, once a python model is loaded."""
        for pid in group_members(self.group):
            self.inside |= _droppings(f"/proc/{pid}/root")
        return sorted(self.inside)

    def remaining(self) -> list[str]:
        found = [f"process {pid}" for pid in group_members(self.group)]
        return found + sorted(_droppings() - self.on_host)


def our_containers(pid: int | None = None) -> list[str]:
    """The containers the engine holds (running or not) that a packager process started: this test's by
    default (other test files run containers at the same time)."""
    client = connect()
    try:
        mine = {"label": [LABEL, f"{OWNER_LABEL}={owner(pid)}"]}
        return [container.name for container in client.containers.list(all=True, filters=mine)]
    finally:
        client.close()


class ContainerLeftovers:
    """The containers of this test process: the server's, while it runs."""

    def __init__(self, server: Server) -> None:
        pass

    def snapshot(self) -> list[str]:
        return our_containers()

    def remaining(self) -> list[str]:
        return our_containers()


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


class FakeLeftovers:
    """A fake server's endpoints that still answer, and its threads."""

    def __init__(self, server: Server) -> None:
        assert isinstance(server, FakeServer)
        self.endpoints = server.endpoints

    def snapshot(self) -> list[str]:
        addresses = (self.endpoints.http, self.endpoints.grpc)
        return [f"listening on {address}" for address in addresses if _answers(address)]

    def remaining(self) -> list[str]:
        threads = [thread.name for thread in threading.enumerate() if thread.name.startswith("fake-triton")]
        return self.snapshot() + [f"thread {name}" for name in threads]


def _kill_local(server: Server) -> None:
    assert isinstance(server, TritonServer)
    os.kill(server.process.pid, signal.SIGKILL)  # type: ignore[attr-defined]


def _kill_container(server: Server) -> None:
    assert isinstance(server, TritonServer)
    server.process.container.kill()  # type: ignore[attr-defined]


def _kill_fake(server: Server) -> None:
    assert isinstance(server, FakeServer)
    server.die()


@dataclass(frozen=True)
class Subject:
    """A launcher under the contract: how to crash one of its servers, how to watch what one holds, and the
    words it refuses a repository that is not there with."""

    launcher: Launcher
    kill: Callable[[Server], None]
    watch: Callable[[Server], Watch]
    cannot_start: str


def _fake() -> FakeLauncher:
    """The fake, told what Triton does with the corpus models the contract loads (the doubler doubles)."""
    launcher = FakeLauncher(
        {"doubler": lambda inputs: {"Y": inputs["X"] * np.float32(2)}}, frozenset({"python"})
    )
    launcher.refuse["refused"] = REFUSAL
    launcher.hang.add("hung")
    return launcher


@pytest.fixture(scope="module", params=["local", "container", "fake"])
def subject(request: pytest.FixtureRequest) -> Subject:
    if request.param == "local":
        local = LocalLauncher.for_runtime(DEFAULT_RUNTIME)
        return Subject(local, _kill_local, LocalLeftovers, EXITED)
    if request.param == "container":
        runtime: Runtime = request.getfixturevalue("container_runtime")
        container = ContainerLauncher.for_runtime(runtime)
        return Subject(container, _kill_container, ContainerLeftovers, "is not a directory: nothing to serve")
    return Subject(_fake(), _kill_fake, FakeLeftovers, EXITED)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """The doubler, beside `refused` (a model Triton refuses) and `hung` (one whose load never ends)."""
    repository = doubler_repository(tmp_path)
    shutil.copytree(CORPUS / "bad" / "bad_dims" / "scorer", repository / "refused")
    shutil.copytree(CORPUS / "bad" / "missing_model_py" / "scorer", repository / "hung")
    return repository


def test_start_load_infer_stop_leaves_nothing(subject: Subject, repository: Path, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with subject.launcher.start(repository, tmp_path / "triton.log", ports=Ports(http=port)) as server:
        watch = subject.watch(server)
        assert server.endpoints.http == f"127.0.0.1:{port}", "it answers on the HTTP port asked for"
        server.load("doubler")
        assert infer_doubler(server) == [[3.0, -4.0]]
        assert watch.snapshot(), "the server holds something while it runs"
    assert not server.alive()
    assert watch.remaining() == []
    assert "successfully loaded 'doubler'" in (tmp_path / "triton.log").read_text(), "its log is kept"


def test_a_refused_load_quotes_the_log_and_the_server_serves_on(
    subject: Subject, repository: Path, tmp_path: Path
) -> None:
    with subject.launcher.start(repository, tmp_path / "triton.log") as server:
        watch = subject.watch(server)
        with pytest.raises(ServerError) as error:
            server.load("refused")
        message = str(error.value)
        assert message.startswith("Triton refused to load 'refused': ")
        assert "dimension must be integer >= 1" in message
        assert "  | " in message, "the server log excerpt is attached"
        server.wait_ready(5)  # a failed load does not make the server unready
        server.load("doubler")
        assert infer_doubler(server) == [[3.0, -4.0]]
    assert watch.remaining() == []


def test_a_hung_load_is_bounded_by_its_timeout_and_leaves_nothing(
    subject: Subject, repository: Path, tmp_path: Path
) -> None:
    hung = (
        rf"loading 'hung' did not finish within {HUNG_AFTER} s "
        r"\(a hung load, or a slower one: raise --load-timeout\)"
    )
    with pytest.raises(ServerError, match=hung):
        with subject.launcher.start(repository, tmp_path / "triton.log") as server:
            watch = subject.watch(server)
            server.load("hung", timeout=HUNG_AFTER)
    assert watch.remaining() == []


def test_a_crashed_server_is_reported_and_leaves_nothing(
    subject: Subject, repository: Path, tmp_path: Path
) -> None:
    with subject.launcher.start(repository, tmp_path / "triton.log") as server:
        watch = subject.watch(server)
        server.load("doubler")
        watch.snapshot()
        subject.kill(server)
        deadline = time.monotonic() + 10
        while server.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.alive()
        with pytest.raises(ServerError, match="Triton stopped answering while loading 'doubler'"):
            server.load("doubler", timeout=5)
    assert watch.remaining() == []


def test_an_interrupt_while_serving_leaves_nothing(
    subject: Subject, repository: Path, tmp_path: Path
) -> None:
    with pytest.raises(KeyboardInterrupt):
        with subject.launcher.start(repository, tmp_path / "triton.log") as server:
            watch = subject.watch(server)
            server.load("doubler")
            watch.snapshot()
            raise KeyboardInterrupt
    assert watch.remaining() == []


def test_a_server_that_cannot_start_says_why(subject: Subject, tmp_path: Path) -> None:
    with pytest.raises(ServerStartError) as error:
        with subject.launcher.start(tmp_path / "no-such-repository", tmp_path / "triton.log"):
            pass
    assert subject.cannot_start in str(error.value) and "no-such-repository" in str(error.value)
    assert not (tmp_path / "no-such-repository").exists(), "nothing made it"


def test_a_backend_the_server_lacks_is_refused_before_it_starts(subject: Subject, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    (repository / "scorer" / "1").mkdir(parents=True)
    (repository / "scorer" / "config.pbtxt").write_text(
        'backend: "onnxruntime"\nmax_batch_size: 4\n'
        'input [ { name: "X", data_type: TYPE_FP32, dims: [ 2 ] } ]\n'
        'output [ { name: "Y", data_type: TYPE_FP32, dims: [ 2 ] } ]\n'
    )
    models = {
        "scorer": TritonModel(repository / "scorer", read_config(repository / "scorer" / "config.pbtxt"))
    }
    name = subject.launcher.name
    with pytest.raises(
        UnservableModel,
        match=f"scorer needs the onnxruntime backend; the {name} launcher's Triton has only python",
    ):
        with loaded(
            repository, models, launcher=subject.launcher, log_path=tmp_path / "triton.log", env_portable=None
        ):
            pass
    assert not (tmp_path / "triton.log").exists(), "no server started"
