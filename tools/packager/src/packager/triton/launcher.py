"""The Triton launcher plug point: a running server as every launcher yields it (`Server`, what callers
use; `TritonServer`, a real tritonserver process reached over HTTP), the `Launcher` interface, and the
registry of launchers by the name a runtime's `launcher` gives.

A launcher starts a server on a model repository and yields a `Server`; leaving the `with` block stops it
on every path (success, error, Ctrl-C, a hung load, a crashed process) and removes what it left. The
messages a failed start or load raises are made here, so that every server words them alike.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from packager.errors import EnvironmentFailure, PackagerError
from packager.registry import Registry
from packager.reporting import Report, silent
from packager.settings import Runtime

READY_TIMEOUT = 30.0
LOAD_TIMEOUT = 120.0
# The server is on this machine's loopback: never through a proxy the environment names (HTTP_PROXY).
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


SHM_TROUBLE = (
    "shared memory pool",
    "Failed to increase the shared memory",
    "Unable to allocate shared memory",
)


def shm_hint(message: str) -> str:
    """`message`, with what to do when it says the server's /dev/shm is too small for a tensor."""
    if any(words in message for words in SHM_TROUBLE):
        return f"{message} (the server's /dev/shm is too small for this: raise the runtime's shm_size)"
    return message


class ServerError(PackagerError):
    """A model did not load (refused, hung, or the server died); the message quotes the server log."""


class ServerStartError(EnvironmentFailure):
    """The server did not start; the message quotes its log."""


class UnservableModel(PackagerError):
    """The target cannot serve a model: its server lacks a backend the model needs."""


class PortUnavailable(PackagerError):
    """A port asked for cannot be listened on (taken, or privileged); the message names it and its option."""


@dataclass(frozen=True)
class Ports:
    """The ports a server is asked to listen on, on 127.0.0.1; None: a free one (metrics always is)."""

    http: int | None = None
    grpc: int | None = None


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


class Server(Protocol):
    """A running Triton server, whatever launched it: where it answers, whether it still runs, model
    control (explicit: nothing is loaded until asked), and its log. `TritonServer` is a real one;
    `packager.triton.fake.FakeServer` answers in this process, for tests."""

    @property
    def endpoints(self) -> Endpoints:
        """Where it answers inference, on 127.0.0.1."""

    def alive(self) -> bool:
        """Whether it still runs."""

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once it answers ready; ServerStartError (quoting its log) if it exits or stalls."""

    def load(self, model: str, timeout: float = LOAD_TIMEOUT) -> None:
        """Load one model (an ensemble loads its steps); ServerError with the log when it fails or hangs."""

    def unload(self, model: str, timeout: float = LOAD_TIMEOUT) -> None:
        """Unload one model; ServerError when it refuses or stops answering."""

    def model_config(self, model: str, timeout: float = READY_TIMEOUT) -> dict[str, object]:
        """The config a loaded model runs with, in Triton's JSON form; ServerError when it gives none."""

    def log_excerpt(self, lines: int = 30) -> str:
        """The last lines of its log, quoted (see `excerpt`)."""


LOG_NOISE = ("CUDA", "NVML", "DCGM", "cuda", "GPU", "pinned memory", "unable to create stream")


def excerpt(log_path: Path, lines: int = 30) -> str:
    """The last lines of a server log, quoted, without its options table and the CPU-only noise."""
    if not log_path.is_file():
        return "(no server log)"
    kept = [
        line
        for line in log_path.read_text(errors="replace").splitlines()
        if line.strip() and not line.startswith(("+", "|")) and not any(word in line for word in LOG_NOISE)
    ]
    return "\n".join(f"  | {line}" for line in kept[-lines:]) or "  | (empty)"


def exited_while_starting(status: int | None, log: str) -> ServerStartError:
    return ServerStartError(f"Triton exited with status {status} while starting:\n{log}")


def load_refused(model: str, message: str, log: str) -> ServerError:
    return ServerError(f"Triton refused to load {model!r}: {message}\n{log}")


def load_hung(model: str, timeout: float, log: str) -> ServerError:
    return ServerError(
        f"loading {model!r} did not finish within {timeout:g} s (a hung load, or a slower one: "
        f"raise --load-timeout):\n{log}"
    )


def stopped_answering(doing: str, reason: object, log: str = "") -> ServerError:
    """The server went away `doing` something ("while loading 'm'"), with the log where it is quoted."""
    return ServerError(f"Triton stopped answering {doing} ({reason})" + (f":\n{log}" if log else ""))


def no_config(model: str, message: str) -> ServerError:
    return ServerError(f"Triton gave no config for {model!r}: {message}")


class TritonServer:
    """A running tritonserver process, whatever launched it, reached over its HTTP API."""

    def __init__(
        self,
        process: Process,
        endpoints: Endpoints,
        *,
        log_path: Path,
        refresh_log: Callable[[], None] = lambda: None,
    ) -> None:
        self.process = process
        self.endpoints = endpoints
        self.log_path = log_path
        self.refresh_log = refresh_log  # brings log_path up to date (a container's output is elsewhere)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_excerpt(self, lines: int = 30) -> str:
        """The last lines of the server log (see `excerpt`)."""
        self.refresh_log()
        return excerpt(self.log_path, lines)

    def _request(self, method: str, path: str, timeout: float) -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://{self.endpoints.http}{path}", method=method, data=b"" if method == "POST" else None
        )
        try:
            with DIRECT.open(request, timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once the server answers ready; raise ServerStartError (quoting its log) if it exits or stalls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise exited_while_starting(self.process.poll(), self.log_excerpt())
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
        except (OSError, http.client.HTTPException) as error:  # URLError and ConnectionError are OSErrors
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise load_hung(model, timeout, self.log_excerpt()) from None
            raise stopped_answering(f"while loading {model!r}", reason, self.log_excerpt()) from None
        if status != 200:
            message = json.loads(body).get("error", body) if body.startswith("{") else body
            raise load_refused(model, message, self.log_excerpt())

    def model_config(self, model: str, timeout: float = READY_TIMEOUT) -> dict[str, object]:
        """The config a loaded model runs with, as Triton completed it (its JSON form); ServerError when
        Triton does not give it."""
        path = f"/v2/models/{urllib.parse.quote(model, safe='')}/config"
        try:
            status, body = self._request("GET", path, timeout=timeout)
        except (OSError, http.client.HTTPException) as error:
            raise stopped_answering(f"when asked for {model!r}'s config", error) from None
        document = json.loads(body) if body.startswith("{") else {}
        if status != 200:
            raise no_config(model, document.get("error", body))
        return dict(document)

    def unload(self, model: str, timeout: float = LOAD_TIMEOUT) -> None:
        """Unload one model (explicit model control); ServerError when Triton refuses or stops answering."""
        try:
            status, body = self._request(
                "POST", f"/v2/repository/models/{urllib.parse.quote(model, safe='')}/unload", timeout=timeout
            )
        except (OSError, http.client.HTTPException) as error:
            raise stopped_answering(f"while unloading {model!r}", error) from None
        if status != 200:
            message = json.loads(body).get("error", body) if body.startswith("{") else body
            raise ServerError(f"Triton refused to unload {model!r}: {message}")


class Launcher(Protocol):
    """Starts a Triton server on a model repository; leaving the block stops it and cleans up."""

    name: str
    # Whether it can serve an environment as a link to the cached unpacked tree (fast loads); one that
    # cannot gets the packed tarball, what ships.
    unpacked_envs: bool
    backends: frozenset[str]  # the backends its server has
    # Its server has no GPU: whether KIND_GPU instance groups run as KIND_CPU in the staged copy of their
    # config (the runtime's gpu_as_cpu, or --cpu), instead of being refused before it starts.
    gpu_as_cpu: bool

    def start(
        self, repository: Path, log_path: Path, *, lend_interpreter: bool = True, ports: Ports = Ports()
    ) -> AbstractContextManager[Server]:
        """Start the server and wait until it is ready. `lend_interpreter`: python steps without an
        environment of their own run on the server's interpreter; with False, none is there to lean on.
        `ports`: where it answers on this machine (see `relay.wired`)."""


LAUNCHERS: Registry[Callable[[Runtime, Report], Launcher]] = Registry(
    "launcher",
    {
        "local": "packager.triton.local:LocalLauncher.for_runtime",
        "container": "packager.triton.container:ContainerLauncher.for_runtime",
    },
)


def launcher_for(runtime: Runtime, report: Report = silent) -> Launcher:
    """The launcher the runtime's configuration names, ready to start servers (what it installs or builds
    for them first, said to `report`)."""
    return LAUNCHERS.factory(runtime.launcher)(runtime, report)


def server_arguments(repository: Path, listen: tuple[int, int, int]) -> list[str]:
    """The tritonserver arguments every launcher passes: the repository, explicit model control (a failed
    load must not make the server unready for the models after it), and the HTTP, gRPC and metrics
    endpoints on 127.0.0.1 at `listen` (where the server runs: see `relay`)."""
    http, grpc, metrics = listen
    return [
        f"--model-repository={repository}",
        "--model-control-mode=explicit",
        "--strict-readiness=false",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
    ]


PORT_OPTIONS = {"http": "--http-port", "grpc": "--grpc-port"}


def listening_ports(ports: Ports) -> tuple[int, int, int]:
    """The HTTP, gRPC and metrics ports: each one asked for once binding it on 127.0.0.1 succeeds, the
    others free ones (never one asked for)."""
    if ports.http is not None and ports.http == ports.grpc:
        raise PortUnavailable(
            f"--http-port and --grpc-port are both {ports.http}: each endpoint needs a port of its own"
        )
    sockets: list[socket.socket] = []
    try:
        for name, port in (("http", ports.http), ("grpc", ports.grpc), ("metrics", None)):
            sockets.append(socket.socket())
            _bind(sockets[-1], name, port)
        http, grpc, metrics = (sock.getsockname()[1] for sock in sockets)
        return http, grpc, metrics
    finally:
        for sock in sockets:
            sock.close()


def _bind(sock: socket.socket, name: str, port: int | None) -> None:
    """Bind `sock` on 127.0.0.1 to the port `name` asked for (PortUnavailable, naming its option, when
    it cannot be), else to a free one."""
    if port is None:
        sock.bind(("127.0.0.1", 0))
        return
    option = PORT_OPTIONS[name]
    # As servers bind: only a listener is in the way, not the TIME_WAIT of a server just stopped.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise PortUnavailable(
                f"port {port} ({option}) is already in use on 127.0.0.1: stop what listens there, "
                f"or choose another {option} (left out, a free port is chosen)"
            ) from None
        raise PortUnavailable(
            f"cannot listen on port {port} ({option}) on 127.0.0.1: {error.strerror or error}"
        ) from None


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
