"""The HTTP front: SageMaker Runtime's InvokeEndpoint on 127.0.0.1, as boto3's `sagemaker-runtime` client
sends it (`POST /endpoints/{EndpointName}/invocations`, the target in `X-Amzn-SageMaker-Target-Model`),
answered by a backend (the `Emulator`). Errors are answered as the service answers them, in the rest-json
form botocore maps to its modeled exceptions: the error's name in `x-amzn-ErrorType`, and a JSON body with
`message` and the error's other members (ModelError's OriginalStatusCode and OriginalMessage).

Hostile requests are answered, never followed: the TargetModel is checked (`limits.check_target`) and the
body's size decided from its headers before a byte of it is read (a chunked body is counted as it is read);
every request the front cannot read gets the service's error shape with an HTTP status that says why. A
bounded pool of workers serves connections; while all are busy, new connections wait in the listen backlog
and kept-alive ones are closed once answered. Each request must begin within the idle timeout and arrive
whole within the request timeout (a client that sends slowly is answered 408).
"""

from __future__ import annotations

import io
import json
import queue
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from urllib.parse import urlsplit

from packager.endpoint.errors import (
    EndpointError,
    PayloadTooLarge,
    RequestInvalid,
    UnknownOperation,
)
from packager.endpoint.forward import Answer
from packager.endpoint.limits import MAX_BODY, check_target, shown
from packager.errors import UsageError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer  # pants: no-infer-dep

INVOCATIONS = re.compile(r"/endpoints/([^/]+)/invocations")
TARGET_HEADER = "X-Amzn-SageMaker-Target-Model"
VARIANT = "AllTraffic"
MAX_LINE = 65536  # a request line or header line, as http.client reads them
MAX_CHUNK_LINE = 1024
CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
IDLE_CHECK = 0.25  # how often a kept-alive connection's worker looks whether a new connection needs it
# After an answer sent before the body was read: what the client still sends is read and dropped, up to
# this much for this long, so that its close is not a reset that loses the answer.
LINGER_BYTES = 2 * MAX_BODY
LINGER_SECONDS = 2.0
READ_SIZE = 65536
MAX_SHOWN = 300  # characters of http.server's own refusal (it quotes the request line)


class Backend(Protocol):
    """What answers InvokeEndpoint requests (the emulator)."""

    def invoke(self, target: str, body: bytes, content_type: str | None) -> Answer:
        """The answer to one request for `target`; EndpointError when it is refused."""


@dataclass(frozen=True)
class Connections:
    """How the front takes connections: `workers` are served at once and up to `backlog` more wait to be
    accepted; each request must begin within `idle_timeout` seconds and then arrive whole within
    `request_timeout` (its answer is sent within that too)."""

    workers: int = 32
    backlog: int = 1024
    idle_timeout: float = 15.0
    request_timeout: float = 30.0


class FrontServer(HTTPServer):
    """An HTTP server with a bounded pool of worker threads: while every worker is busy, accepting waits,
    and new connections wait in the listen backlog (`Connections.backlog`) rather than being reset."""

    def __init__(self, port: int, backend: Backend, connections: Connections) -> None:
        self.request_queue_size = connections.backlog  # listen()'s backlog, read when the server binds
        super().__init__(("127.0.0.1", port), InvocationHandler)
        self.backend = backend
        self.connections = connections
        self._changed = threading.Condition()
        self._busy = 0
        self._waiting = False  # a connection is accepted and waits for a worker
        self._stopping = False
        self._handoff: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        for number in range(connections.workers):
            threading.Thread(target=self._work, name=f"mme-front-{number}", daemon=True).start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to a worker once one is free; nothing more is accepted until then."""
        with self._changed:
            while self._busy == self.connections.workers and not self._stopping:
                self._waiting = True
                self._changed.wait()
            self._waiting = False
            if self._stopping:
                self.shutdown_request(request)
                return
            self._busy += 1
        self._handoff.put((request, client_address))

    def _work(self) -> None:
        while (connection := self._handoff.get()) is not None:
            request, client_address = connection
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self._changed:
                    self._busy -= 1
                    self._changed.notify_all()

    def crowded(self) -> bool:
        """Whether an accepted connection waits for a worker: kept-alive connections then give theirs up."""
        return self._waiting

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is no error; anything else is reported as socketserver does."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def shutdown(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        super().shutdown()

    def server_close(self) -> None:
        super().server_close()
        for _ in range(self.connections.workers):
            self._handoff.put(None)


class _Clock(io.RawIOBase):
    """A connection's reads, each given only the time left until `deadline` (time.monotonic())."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.deadline = 0.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("out of time")
        self.connection.settimeout(left)
        return self.connection.recv_into(buffer)


class InvocationHandler(BaseHTTPRequestHandler):
    """One connection's InvokeEndpoint requests."""

    server: FrontServer
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # every answer is a full HTTP/1.1 response, even to HTTP/0.9
    # Headers and body go out in two writes: with Nagle's algorithm the second waits for the client's
    # delayed ACK, about 40 ms a request on Linux.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own reader: requests are read against a clock instead
        self.clock = _Clock(self.connection)
        self.reader = io.BufferedReader(self.clock, READ_SIZE)
        self.rfile = self.reader
        self.served = 0
        self.body_pending = False
        self.expects_continue = False

    def handle_one_request(self) -> None:
        self.close_connection = True
        try:
            if self._arrived():
                self.served += 1
                self._respond()
        except OSError:  # the client went away, or stopped reading its answer
            self.close_connection = True

    def _arrived(self) -> bool:
        """Whether a request begins within the idle timeout (on a kept-alive connection: and before a new
        connection needs this worker); from its first byte it has the request timeout to arrive whole."""
        idle_until = time.monotonic() + self.server.connections.idle_timeout
        while not (self.served and self.server.crowded()):
            self.clock.deadline = min(idle_until, time.monotonic() + IDLE_CHECK)
            try:
                first = self.reader.peek(1)
            except TimeoutError:
                if time.monotonic() >= idle_until:
                    return False
                continue
            self.clock.deadline = time.monotonic() + self.server.connections.request_timeout
            return bool(first)
        return False

    def _respond(self) -> None:
        self.body_pending = True
        try:
            target, body = self._read()
        except TimeoutError:
            timeout = self.server.connections.request_timeout
            self._refuse(RequestInvalid(f"the request did not arrive within {timeout:g} s", 408))
            return
        except EndpointError as error:
            self._refuse(error)
            return
        self.body_pending = False
        try:
            answer = self.server.backend.invoke(target, body, self.headers.get("Content-Type"))
        except EndpointError as error:
            self._refuse(error)
        except Exception as error:  # a backend failure is the service's InternalFailure, never a reset
            self._refuse(EndpointError(f"the endpoint failed: {error}"))
        else:
            headers = {"Content-Type": answer.content_type, "x-Amzn-Invoked-Production-Variant": VARIANT}
            self._send(200, answer.body, headers)

    def _read(self) -> tuple[str, bytes]:
        """The request's target and body, read only as far as each part is valid."""
        self.expects_continue = False
        self.request_version = self.default_request_version  # until the request line says otherwise
        self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
        if len(self.raw_requestline) > MAX_LINE:
            raise RequestInvalid(f"Request-URI Too Long: the request line passes {MAX_LINE} bytes", 414)
        if not self.parse_request():  # every other refusal is raised by send_error
            raise RequestInvalid(
                "Bad request: no request line (send POST /endpoints/{EndpointName}/invocations HTTP/1.1)"
            )
        if self.command != "POST" or INVOCATIONS.fullmatch(urlsplit(self.path).path) is None:
            raise UnknownOperation(f"no operation at {self.command} {shown(self.path)}")
        target = check_target(self._single(TARGET_HEADER))
        return target, self._body()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> NoReturn:
        """http.server's refusals of a request line or headers, raised to be answered as every other."""
        reason = message or self.responses.get(code, ("",))[0]
        raise RequestInvalid((f"{reason}: {explain}" if explain else reason)[:MAX_SHOWN], code)

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue` is answered once the headers are known to be acceptable."""
        self.expects_continue = True
        return True

    def _single(self, name: str) -> str | None:
        values = self.headers.get_all(name) or []
        if len(values) > 1:
            raise RequestInvalid(f"more than one {name} header: send one")
        return values[0] if values else None

    def _body(self) -> bytes:
        """The body, refused before it is read when its Content-Length passes the limit (a chunked body:
        as soon as its chunks do)."""
        length = self._single("Content-Length")
        codings = self.headers.get_all("Transfer-Encoding")
        if codings:
            if length is not None:
                raise RequestInvalid("both Content-Length and Transfer-Encoding: send one")
            if [coding.strip().lower() for coding in codings] != ["chunked"]:
                raise RequestInvalid(
                    f"Transfer-Encoding {shown(', '.join(codings))} is not supported: send Content-Length "
                    "or Transfer-Encoding: chunked"
                )
            self._continue()
            return self._chunked()
        if length is None:
            raise RequestInvalid("an InvokeEndpoint request needs Content-Length (or chunked)", 411)
        if CONTENT_LENGTH.fullmatch(length) is None:
            raise RequestInvalid(f"Content-Length {shown(length)} is not a number of bytes")
        size = int(length)
        if size > MAX_BODY:
            raise _too_large()
        self._continue()
        return self._exactly(size)

    def _continue(self) -> None:
        if self.expects_continue:
            self._timed()
            self.send_response_only(100)
            self.end_headers()

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while size := self._chunk_size():
            total += size
            if total > MAX_BODY:
                raise _too_large()
            parts.append(self._exactly(size))
            if self.rfile.readline(3).rstrip(b"\r\n") != b"":
                raise RequestInvalid("a chunk does not end where its size says")
        for _ in range(101):  # trailers, skipped, then the blank line
            if self.rfile.readline(MAX_LINE + 1).strip() == b"":
                return b"".join(parts)
        raise RequestInvalid("Too many headers: more than 100 trailer lines", 431)

    def _chunk_size(self) -> int:
        line = self.rfile.readline(MAX_CHUNK_LINE + 1)
        digits = line.split(b";", 1)[0].strip()
        if not line.endswith(b"\n") or CHUNK_SIZE.fullmatch(digits) is None:
            raise RequestInvalid(f"a chunk size is not hexadecimal digits: {shown(line.decode('latin-1'))}")
        return int(digits, 16)

    def _exactly(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) < size:
            raise RequestInvalid(f"the body ended after {len(data)} of {size} bytes")
        return data

    def _refuse(self, error: EndpointError) -> None:
        """Answer `error` as the service does. Before the body was read the connection closes after the
        answer, and what the client still sends is dropped for a while, so that it reads the answer."""
        body = json.dumps({"message": str(error), **error.fields()}).encode()
        headers = {"Content-Type": "application/json"}
        if error.error_type is not None:
            headers["x-amzn-ErrorType"] = error.error_type
        self._send(error.status, body, headers)
        if self.body_pending:
            self._linger()

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        if self.body_pending or self.server.crowded():
            self.close_connection = True
        self._timed()
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _timed(self) -> None:
        """Writes get the request timeout: a client that does not read its answer is let go."""
        self.connection.settimeout(self.server.connections.request_timeout)

    def _linger(self) -> None:
        self.connection.shutdown(socket.SHUT_WR)
        self.clock.deadline = time.monotonic() + LINGER_SECONDS
        dropped = 0
        while dropped < LINGER_BYTES and (data := self.rfile.read1(READ_SIZE)):
            dropped += len(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Quiet: the CLI reports cold starts and evictions, not every request."""


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"HTTP content length exceeded {MAX_BODY} bytes.")


@contextmanager
def fronted(
    backend: Backend, port: int | None = None, connections: Connections = Connections()
) -> Iterator[str]:
    """`backend` answering InvokeEndpoint on 127.0.0.1 (`port`, else a free one); yields the endpoint URL
    to give boto3 as `endpoint_url`. Stopped on exit."""
    try:
        server = FrontServer(port or 0, backend, connections)
    except OSError as error:
        raise UsageError(
            f"cannot listen on 127.0.0.1 port {port} (--port): {error.strerror or error}"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="mme-front", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
