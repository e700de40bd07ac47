"""The quality gate's only way out of its network namespace: an HTTPS proxy (CONNECT) on a unix socket that
reaches the package indexes Pants resolves from, and nothing else.

The gate runs the models' tests, their authors' code, with no network of its own: no service of this
machine, no cloud metadata address, no DNS. Pants still has to download what its lockfiles pin, so inside
the sandbox a relay listens on 127.0.0.1:PORT (`HTTPS_PROXY`) and connects to this proxy's socket, which
opens a tunnel only to an allowed host's port: the hosts of the indexes Pants is configured with, PyPI's
by default. Every refusal is logged, so that a gate that needs another index says which.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Where Pants resolves from when nothing else is configured, and where PyPI serves its files.
PYPI_HOSTS = ("pypi.org", "files.pythonhosted.org")
INSIDE_PORT = 3128  # the relay's port inside the sandbox: its network namespace is its own
HEADER_LIMIT = 8192
CONNECT_TIMEOUT = 30.0
URL = re.compile(r"https?://(?:[^@/\s'\"]*@)?([A-Za-z0-9.-]+)")


def index_hosts(pants_toml: Path, environment: dict[str, str]) -> frozenset[str]:
    """PyPI's hosts, and those of the URLs in pants.toml's [python-repos] and PANTS_PYTHON_REPOS_*."""
    texts = [value for name, value in environment.items() if name.startswith("PANTS_PYTHON_REPOS_")]
    if pants_toml.is_file():
        section = re.search(r"^\[python-repos\]$(.*?)(?=^\[|\Z)", pants_toml.read_text(), re.M | re.S)
        texts += [section.group(1)] if section else []
    found = {match.lower() for text in texts for match in URL.findall(text)}
    return frozenset({*PYPI_HOSTS, *found})


class EgressProxy:
    """Tunnels to `allowed` hosts (on ports 443 and 80) for whoever connects to `path`; writes each
    refusal to `log`."""

    def __init__(self, path: Path, allowed: frozenset[str], log: Path) -> None:
        self.allowed = allowed
        self.log = log
        self.refused: list[str] = []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self.lock = threading.Lock()

    def serve(self) -> None:
        """Accept until the listener is closed, each connection on a thread of its own."""
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed: the gate is over
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            client.settimeout(CONNECT_TIMEOUT)  # for the request; none once the tunnel is open
            try:
                target = self._destination(client)
            except OSError:  # a client that never sent a whole request
                return
            if target is None:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
            except OSError as error:
                client.sendall(f"HTTP/1.1 502 Bad Gateway\r\n\r\n{error}".encode())
                return
            with upstream:
                upstream.settimeout(None)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
                back.start()
                _pump(client, upstream)
                back.join()

    def _destination(self, client: socket.socket) -> tuple[str, int] | None:
        """The allowed host and port a CONNECT asks for; else None, the client answered 403."""
        header = b""
        while b"\r\n\r\n" not in header and len(header) < HEADER_LIMIT:
            data = client.recv(4096)
            if not data:
                return None
            header += data
        request = header.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request.partition(" ")
        host, _, port = rest.partition(" ")[0].rpartition(":")
        if method == "CONNECT" and host.lower() in self.allowed and port in ("443", "80"):
            return host, int(port)
        self._refuse(request[:200])
        client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        return None

    def _refuse(self, request: str) -> None:
        with self.lock:
            self.refused.append(request)
            with self.log.open("a") as log:
                log.write(f"packager gate: refused {request!r}: only {', '.join(sorted(self.allowed))}\n")

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until `source` ends, then end `sink`'s writing side."""
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@contextmanager
def egress_proxy(path: Path, allowed: frozenset[str], log: Path) -> Iterator[EgressProxy]:
    """A proxy serving at `path` until the block ends."""
    proxy = EgressProxy(path, allowed, log)
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
        thread.join(timeout=5)
