"""The fast tier: tests on fakes only (`FakeLauncher`, `FakeEnvBuilder`, `MemoryStore`), run with
`./pants test tests/fast::`. Nothing here starts Triton, bubblewrap, podman, moto, uv, pip or the packager
in a subprocess, and this file holds every test to it: a test fails that starts any program but git
(artifact provenance reads it, in milliseconds), asks for a real launcher or a container engine, asks for
moto, or connects anywhere but to a port a socket of this process listens on (the fake servers' HTTP
fronts, the emulator's front). gRPC's C core opens its sockets below Python: its calls go to the fake's
gRPC front, which only this process serves. Each test gets the cache of this session (PACKAGER_CACHE):
a fake's environments and configs never reach the user's."""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from packager.artifacts import Artifact, build_artifact
from packager.environments.fake import FakeEnvBuilder, fake_lock
from packager.modeldir import ModelDir, scaffold
from packager.preflight import prepare
from packager.settings import DEFAULT_RUNTIME
from packager.triton import container, engine
from packager.triton.container import ContainerLauncher
from packager.triton.local import LocalLauncher

ALLOWED_PROGRAMS = {"git"}
SCAFFOLD_PINS = {"numpy": "1.26.4"}  # what `packager new`'s requirements.txt resolves to


def _refuse(what: str) -> NoReturn:
    pytest.fail(f"the fast tier runs on fakes only, and this test {what}: move it out of tests/fast/")


def _program(args: Any) -> str:
    first = shlex.split(args)[0] if isinstance(args, str) else os.fspath(list(args)[0])
    return Path(str(first)).name


class Listeners:
    """The ports this process listens on (recorded as each socket starts listening)."""

    def __init__(self) -> None:
        self.ports: set[int] = set()

    def check(self, sock: socket.socket, address: Any) -> None:
        """Refuse a connection that does not go to a port of this process on the loopback."""
        if sock.family == socket.AF_UNIX:
            _refuse(f"connects to the unix socket {address!r}")
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        host, port = address[0], int(address[1])
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback or port not in self.ports:
            _refuse(f"connects to {host}:{port}, which no socket of this process listens on")


@pytest.fixture(scope="session")
def listeners() -> Listeners:
    return Listeners()


@pytest.fixture(scope="session")
def fast_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packager-cache")


@pytest.fixture(scope="package", autouse=True)
def only_fakes(listeners: Listeners, fast_cache: Path) -> Iterator[None]:
    """Hold every test of the tier, and its fixtures, to the tier's rules (see the module's docstring)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _guard(monkeypatch, listeners, fast_cache)
        yield


def _guard(monkeypatch: pytest.MonkeyPatch, listeners: Listeners, fast_cache: Path) -> None:
    monkeypatch.setenv("PACKAGER_CACHE", str(fast_cache))
    execute = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def only_git(self: subprocess.Popen[Any], args: Any, *rest: Any) -> None:
        if _program(args) not in ALLOWED_PROGRAMS:
            _refuse(f"starts {args!r}")
        execute(self, args, *rest)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", only_git)
    monkeypatch.setattr(os, "system", lambda command: _refuse(f"runs {command!r}"))
    for launcher in (LocalLauncher, ContainerLauncher):
        monkeypatch.setattr(
            launcher, "for_runtime", lambda *args, **kwargs: _refuse("asks for a real launcher")
        )
        monkeypatch.setattr(launcher, "start", lambda *args, **kwargs: _refuse("starts a real Triton"))
    for module in (engine, container):
        monkeypatch.setattr(module, "connect", lambda: _refuse("connects to a container engine"))

    listen, connect, connect_ex = socket.socket.listen, socket.socket.connect, socket.socket.connect_ex

    def listening(sock: socket.socket, *args: Any) -> None:
        listen(sock, *args)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            listeners.ports.add(int(sock.getsockname()[1]))

    def connecting(sock: socket.socket, address: Any) -> None:
        listeners.check(sock, address)
        connect(sock, address)

    def connecting_ex(sock: socket.socket, address: Any) -> int:
        listeners.check(sock, address)
        return int(connect_ex(sock, address))

    monkeypatch.setattr(socket.socket, "listen", listening)
    monkeypatch.setattr(socket.socket, "connect", connecting)
    monkeypatch.setattr(socket.socket, "connect_ex", connecting_ex)


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    _refuse("asks for moto (an S3 API): use MemoryStore")


@pytest.fixture(scope="session")
def scaffold_lock(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The lock of `packager new`'s requirements for the embedded runtime, written without uv."""
    model = scaffold(tmp_path_factory.mktemp("lock"), "locked")
    return fake_lock(model, DEFAULT_RUNTIME, SCAFFOLD_PINS)


def built(model: Path, out: Path) -> Artifact:
    """A real artifact of a model directory for the embedded runtime, its environment a fake's."""
    report, environment = prepare(ModelDir(model), DEFAULT_RUNTIME, FakeEnvBuilder())
    return build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=out)
