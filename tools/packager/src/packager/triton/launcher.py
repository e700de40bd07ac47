"""The Triton runtime: where a server comes from, how it starts, loads models, and leaves nothing behind.

A launcher starts a server on a model repository and yields a `Server`; leaving the `with` block stops it
on every path (success, error, Ctrl-C, a hung load, a crashed process) and removes what it left: its
process group, the environments Triton unpacked under /tmp, and its /dev/shm regions.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from packager.cache import building, cache_root, locked
from packager.config import Runtime
from packager.errors import EnvironmentFailure, PackagerError
from packager.interpreters import Interpreter, find_interpreter
from packager.subprocesses import run_tool

READY_TIMEOUT = 30.0
LOAD_TIMEOUT = 120.0
STOP_GRACE = 10.0
SHM = Path("/dev/shm")
PR_SET_PDEATHSIG = 1
# Bump when the server installation changes shape, so that cached ones are rebuilt.
FORMAT = 1


class ServerError(PackagerError):
    """A model did not load (refused, hung, or the server died); the message quotes the server log."""


class ServerStartError(EnvironmentFailure):
    """The server did not start; the message quotes its log."""


@dataclass(frozen=True)
class ServerInstall:
    """A Triton server binary with its backends, ready to run on this machine."""

    directory: Path  # the wheel's tritonserver/ directory
    bin_dir: Path  # a Python environment whose python3 the stub uses for models without their own env
    interpreter: Interpreter

    @property
    def binary(self) -> Path:
        return self.directory / "bin" / "tritonserver"


def install_server(runtime: Runtime, progress: bool = True) -> ServerInstall:
    """The runtime's server, installed once into the cache from its PyPI package (nvidia-pytriton)."""
    if not runtime.server_package:
        raise EnvironmentFailure(f"runtime {runtime.name!r} names no server_package to run Triton from")
    interpreter = find_interpreter(runtime.python)
    fingerprint = json.dumps([FORMAT, runtime.server_package, str(interpreter.path), interpreter.version])
    name = f"{runtime.server_package.replace('==', '-')}-py{interpreter.version}-"
    directory = cache_root() / "servers" / (name + hashlib.sha256(fingerprint.encode()).hexdigest()[:12])
    if not (directory / "installed.json").is_file():
        with locked(directory):
            if not (directory / "installed.json").is_file():
                if progress:
                    print(
                        f"installing Triton from {runtime.server_package} into {directory}",
                        file=sys.stderr,
                        flush=True,
                    )
                _install(runtime, interpreter, directory)
    return _server_install(directory, interpreter)


def _server_install(directory: Path, interpreter: Interpreter) -> ServerInstall:
    found = sorted(directory.glob("venv/lib/python*/site-packages/pytriton/tritonserver"))
    if not found:
        raise EnvironmentFailure(f"{directory} holds no tritonserver; delete it and run again")
    return ServerInstall(found[0], directory / "venv" / "bin", interpreter)


def _install(runtime: Runtime, interpreter: Interpreter, directory: Path) -> None:
    with building(directory) as scratch:
        venv = scratch / "venv"
        constraints = scratch / "constraints.txt"
        constraints.write_text("".join(f"{c.requirement}\n" for c in runtime.constraints))
        commands = [
            [str(interpreter.path), "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
             runtime.server_package, "-c", str(constraints)],
        ]  # fmt: skip
        for command in commands:
            run_tool(command, f"installing {runtime.server_package}")
        install = _server_install(scratch, interpreter)
        stub = install.directory / "python_backend_stubs" / interpreter.minor / "triton_python_backend_stub"
        if not stub.is_file():
            raise EnvironmentFailure(
                f"{runtime.server_package} ships no python backend stub for {interpreter.minor}"
            )
        shutil.copy2(stub, install.directory / "backends" / "python" / stub.name)
        facts = {
            "package": runtime.server_package,
            "python": interpreter.version,
            "triton": runtime.triton_version,
        }
        (scratch / "installed.json").write_text(json.dumps(facts, indent=2) + "\n")


@dataclass(frozen=True)
class Endpoints:
    """Where a running server answers."""

    http: str
    grpc: str
    metrics: str


class Process(Protocol):
    """What a launcher gives the server handle: is it running, and how did it end."""

    def poll(self) -> int | None:
        """None while running, else the exit status."""


class Server:
    """A running Triton server, whatever launched it: readiness, model loading, and its log."""

    def __init__(self, process: Process, endpoints: Endpoints, log_path: Path) -> None:
        self.process = process
        self.endpoints = endpoints
        self.log_path = log_path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_excerpt(self, lines: int = 30) -> str:
        """The last lines of the server log, without its options table and the CPU-only noise."""
        if not self.log_path.is_file():
            return "(no server log)"
        noise = ("CUDA", "NVML", "DCGM", "cuda", "GPU", "pinned memory", "unable to create stream")
        kept = [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if line.strip() and not line.startswith(("+", "|")) and not any(word in line for word in noise)
        ]
        return "\n".join(f"  | {line}" for line in kept[-lines:]) or "  | (empty)"

    def _request(self, method: str, path: str, timeout: float) -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://{self.endpoints.http}{path}", method=method, data=b"" if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once the server answers ready; raise ServerStartError (quoting its log) if it exits or stalls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerStartError(
                    f"Triton exited with status {self.process.poll()} while starting:\n{self.log_excerpt()}"
                )
            try:
                if self._request("GET", "/v2/health/ready", timeout=2.0)[0] == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        raise ServerStartError(f"Triton was not ready after {timeout:.0f} s:\n{self.log_excerpt()}")

    def load(self, model: str, timeout: float = LOAD_TIMEOUT) -> None:
        """Load one model (explicit model control); raise ServerError with the log when it fails or hangs."""
        try:
            status, body = self._request(
                "POST", f"/v2/repository/models/{urllib.parse.quote(model, safe='')}/load", timeout=timeout
            )
        except (TimeoutError, socket.timeout, urllib.error.URLError) as error:
            if isinstance(error, urllib.error.URLError) and not isinstance(
                error.reason, (TimeoutError, socket.timeout)
            ):
                raise ServerError(
                    f"Triton stopped answering while loading {model!r} ({error.reason}):\n{self.log_excerpt()}"
                ) from None
            raise ServerError(
                f"loading {model!r} did not finish within {timeout:.0f} s (a hung load):\n{self.log_excerpt()}"
            ) from None
        if status != 200:
            message = json.loads(body).get("error", body) if body.startswith("{") else body
            raise ServerError(f"Triton refused to load {model!r}: {message}\n{self.log_excerpt()}")


class Launcher(Protocol):
    """Starts a Triton server on a model repository; leaving the block stops it and cleans up."""

    name: str

    def start(self, repository: Path, log_path: Path) -> AbstractContextManager[Server]:
        """Start the server and wait until it is ready."""


def launcher_for(runtime: Runtime, progress: bool = True) -> Launcher:
    """The launcher the runtime's configuration names."""
    if runtime.launcher == "local":
        return LocalLauncher(install_server(runtime, progress))
    raise EnvironmentFailure(f"runtime {runtime.name!r}: unknown launcher {runtime.launcher!r}")


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that nothing listens on now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalLauncher:
    """Runs the server binary of a ServerInstall as a local process group."""

    name = "local"

    def __init__(self, install: ServerInstall, ready_timeout: float = READY_TIMEOUT) -> None:
        self.install = install
        self.ready_timeout = ready_timeout

    @contextmanager
    def start(self, repository: Path, log_path: Path) -> Iterator[Server]:
        http, grpc, metrics = free_ports(3)
        prefix = shm_prefix(http)
        command = [
            str(self.install.binary),
            f"--model-repository={repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={self.install.directory / 'backends'}",
            f"--cache-directory={self.install.directory / 'caches'}",
            f"--backend-config=python,shm-region-prefix-name={prefix}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--metrics-address=127.0.0.1",
            f"--http-port={http}",
            f"--grpc-port={grpc}",
            f"--metrics-port={metrics}",
        ]
        environment = {
            **os.environ,
            "PATH": f"{self.install.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "LD_LIBRARY_PATH": str(self.install.interpreter.libdir),
        }
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        watcher = EnvWatcher(process.pid)
        try:
            server = Server(
                process, Endpoints(f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", f"127.0.0.1:{metrics}"), log_path
            )
            server.wait_ready(self.ready_timeout)
            yield server
        finally:
            stop_process_group(process, watcher, prefix)


class EnvWatcher:
    """Notes, while a server runs, which /tmp/python_env_* directories its processes work in.

    Triton unpacks a packed environment into /tmp/python_env_<random> (/tmp is fixed) and removes it on
    a graceful shutdown, but not when it has to be killed. Only directories seen in use by this server's
    own process group are ever removed: another server's, unpacking at the same moment, is left alone.
    """

    INTERVAL = 0.2

    def __init__(self, group: int) -> None:
        self.group = group
        self.seen: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self.seen |= envs_in_use(group_members(self.group))

    def stop(self) -> set[Path]:
        self._stop.set()
        self._thread.join()
        self.seen |= envs_in_use(group_members(self.group))
        return self.seen


def _die_with_parent() -> None:
    """In the server's process, before exec: have Linux kill it if the packager dies, even by SIGKILL
    (no cleanup code runs then; its python stubs notice their parent is gone and exit too)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def shm_prefix(http_port: int) -> str:
    """The name prefix of the /dev/shm regions of the server this process runs on `http_port`."""
    return f"packager_{os.getpid()}_{http_port}_"


def stop_process_group(process: subprocess.Popen[bytes], watcher: EnvWatcher, regions: str) -> None:
    """Stop the server's whole process group, then remove the environments it unpacked and its shm regions."""
    group = process.pid
    envs = watcher.stop()
    _signal_group(group, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(group, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + STOP_GRACE
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    for directory in envs - envs_in_use(_all_pids()):
        shutil.rmtree(directory, ignore_errors=True)
    for region in SHM.glob(f"{regions}*"):
        region.unlink(missing_ok=True)


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def group_members(group: int) -> list[int]:
    members = []
    for pid in _all_pids():
        try:
            if os.getpgid(pid) == group:
                members.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def envs_in_use(pids: list[int]) -> set[Path]:
    """The /tmp/python_env_* directories these processes run in or hold files of."""
    found: set[Path] = set()
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            links = [os.readlink(fd) for fd in glob.glob(f"/proc/{pid}/fd/*")]
        except (OSError, PermissionError):
            continue
        paths = [
            entry.split(b"=", 1)[1].decode(errors="replace")
            for entry in environ
            if entry.startswith(b"VIRTUAL_ENV=")
        ]
        for path in [*paths, *links]:
            if path.startswith("/tmp/python_env_"):
                found.add(Path("/".join(path.split("/")[:3])))
    return found
