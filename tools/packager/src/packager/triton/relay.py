"""Serving a Triton that has no network: the server runs in a network namespace of its own (nothing but
its loopback), so model code reaches neither this machine's services, the cloud's metadata address nor
DNS; its endpoints reach the packager through unix sockets in a directory both sides see.

Inside, `socat` listens on `<directory>/<endpoint>.sock` for each endpoint and connects to the server's
fixed loopback port there; outside, `socat` listens on this machine's 127.0.0.1 ports the packager chose
and connects to those sockets. Both sides are `socat` (Debian's `socat`): C, one process per connection,
and no interpreter of ours inside the sandbox. Connections only ever go inwards: the sockets lead to the
server and to nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.errors import EnvironmentFailure
from packager.scratch import scratch_dir
from packager.triton.cleanup import die_with_parent, stop_process_group
from packager.triton.launcher import Endpoints, Ports, Process, listening_ports

ENDPOINTS = ("http", "grpc", "metrics")
# Where the server listens inside its own network namespace: nothing else can be there.
INSIDE_PORTS = (8000, 8001, 8002)
SOCAT_HINT = "`apt-get install socat` (or your distribution's package)"
# Each endpoint's inside relay, then the server in its place (so it is the sandbox's main process and a
# container's PID 1). Their errors go nowhere: the first readiness polls fail until the server listens.
INSIDE_SCRIPT = (
    'directory=$1; shift; for relay in "$@"; do [ "$relay" = -- ] && break; '
    'socat -lf /dev/null UNIX-LISTEN:"$directory/${relay%:*}.sock",fork,mode=0666 '
    'TCP:127.0.0.1:"${relay#*:}",nodelay & shift; done; shift; exec "$@"'
)


def socat_binary() -> str:
    """The socat binary, or a clear error saying how to get it."""
    found = shutil.which("socat")
    if found is None:
        raise EnvironmentFailure(
            f"serving a Triton without a network needs socat on this machine: {SOCAT_HINT}; model code "
            f"must not reach the network of the machine that tests it"
        )
    return found


def inside_command(directory: Path, argv: list[str]) -> list[str]:
    """`argv` (the server) behind the inside relays: a shell starts one per endpoint, then becomes it."""
    relays = [f"{name}:{port}" for name, port in zip(ENDPOINTS, INSIDE_PORTS, strict=True)]
    return ["/bin/sh", "-c", INSIDE_SCRIPT, "sh", str(directory), *relays, "--", *argv]


class HostRelays:
    """The outside relays: this machine's 127.0.0.1 ports forwarded to the sockets in `directory`."""

    def __init__(self, processes: list[subprocess.Popen[bytes]], log_path: Path) -> None:
        self.processes = processes
        self.log_path = log_path

    def failed(self) -> int | None:
        """The exit status of a relay that stopped (one that could not listen, say), else None."""
        for process in self.processes:
            if process.poll() is not None:
                return process.returncode
        return None


@contextmanager
def host_relays(directory: Path, ports: tuple[int, ...], log_path: Path) -> Iterator[HostRelays]:
    """One relay per endpoint from 127.0.0.1:<port> to `<directory>/<endpoint>.sock`, stopped on exit."""
    binary = socat_binary()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with open(log_path, "ab") as log:
            for name, port in zip(ENDPOINTS, ports, strict=True):
                listen = f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay"
                processes.append(
                    subprocess.Popen(
                        [binary, listen, f"UNIX-CONNECT:{directory / name}.sock"],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={},
                        start_new_session=True,
                        preexec_fn=die_with_parent,
                    )
                )
        yield HostRelays(processes, log_path)
    finally:
        for process in processes:
            stop_process_group(process)


class _Relayed:
    """The server's process as the Server handle sees it: it also stops being alive when a relay stops;
    anything else is the server process's own (its pid, its container)."""

    def __init__(self, server: Process, relays: HostRelays) -> None:
        self.server = server
        self.relays = relays

    def poll(self) -> int | None:
        status = self.server.poll()
        return status if status is not None else self.relays.failed()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)


@dataclass(frozen=True)
class Wiring:
    """How a server is reached: its endpoints on this machine, the ports it listens on where it runs, and,
    without a network, the relay directory it must see (writable) and the relays on this side."""

    endpoints: Endpoints
    listen: tuple[int, int, int]
    directory: Path | None = None
    relays: HostRelays | None = None

    def command(self, argv: list[str]) -> list[str]:
        """The server's command line, behind the inside relays where it has no network."""
        return inside_command(self.directory, argv) if self.directory else argv

    def process(self, server: Process) -> Process:
        """What tells whether the server, and the relays that reach it, still run."""
        return _Relayed(server, self.relays) if self.relays else server


@contextmanager
def wired(ports: Ports, network: bool, log_path: Path) -> Iterator[Wiring]:
    """The wiring of one server: this machine's ports (those asked for, else free ones); with `network`,
    the server listens on them itself; without, on its own loopback behind relays (their log beside
    `log_path`). The relay directory is world-writable (a container's server runs as nobody) inside a
    directory only we can enter."""
    http, grpc, metrics = listening_ports(ports)
    endpoints = Endpoints(f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", f"127.0.0.1:{metrics}")
    if network:
        yield Wiring(endpoints, (http, grpc, metrics))
        return
    socat_binary()  # refused before anything starts
    with scratch_dir("relay") as scratch:
        directory = scratch / "sockets"
        directory.mkdir()
        os.chmod(directory, 0o777)
        relay_log = log_path.with_name(f"{log_path.name}.relays")
        with host_relays(directory, (http, grpc, metrics), relay_log) as relays:
            yield Wiring(endpoints, INSIDE_PORTS, directory, relays)
