"""The HTTP front: SageMaker Runtime's InvokeEndpoint on 127.0.0.1, as boto3's `sagemaker-runtime` client
sends it (`POST /endpoints/{EndpointName}/invocations`, the target in `X-Amzn-SageMaker-Target-Model`),
answered by an `Emulator`. Errors are answered as the service answers them, in the rest-json form
botocore maps to its modeled exceptions: the error's name in `x-amzn-ErrorType`, and a JSON body with
`message` and the error's other members (ModelError's OriginalStatusCode and OriginalMessage).
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import urlparse

from packager.endpoint.emulator import Emulator
from packager.endpoint.errors import EndpointError
from packager.errors import PackagerError, UsageError

INVOCATIONS = re.compile(r"/endpoints/([^/]+)/invocations")
TARGET_HEADER = "X-Amzn-SageMaker-Target-Model"
VARIANT = "AllTraffic"


class FrontServer(ThreadingHTTPServer):
    """A threading HTTP server that knows the emulator it fronts."""

    daemon_threads = True
    emulator: Emulator


class InvocationHandler(BaseHTTPRequestHandler):
    """One connection's InvokeEndpoint requests."""

    server: FrontServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the second waits for the client's
    # delayed ACK, about 40 ms a request on Linux.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if INVOCATIONS.fullmatch(urlparse(self.path).path) is None:
            self._error(404, "UnknownOperationException", f"no operation at POST {self.path}", {})
            return
        target = self.headers.get(TARGET_HEADER)
        try:
            answer = self.server.emulator.invoke(target or None, body, self.headers.get("Content-Type"))
        except EndpointError as error:
            self._error(error.status, error.error_type, str(error), error.fields())
        except PackagerError as error:
            self._error(500, "InternalFailure", str(error), {})
        else:
            self._send(
                200,
                answer.body,
                {"Content-Type": answer.content_type, "x-Amzn-Invoked-Production-Variant": VARIANT},
            )

    def _error(self, status: int, error_type: str, message: str, fields: dict[str, Any]) -> None:
        body = json.dumps({"message": message, **fields}).encode()
        self._send(status, body, {"Content-Type": "application/json", "x-amzn-ErrorType": error_type})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the CLI reports cold starts and evictions, not every request."""


@contextmanager
def fronted(emulator: Emulator, port: int | None = None) -> Iterator[str]:
    """The emulator answering InvokeEndpoint on 127.0.0.1 (`port`, else a free one); yields the endpoint URL
    to give boto3 as `endpoint_url`. Stopped on exit."""
    try:
        server = FrontServer(("127.0.0.1", port or 0), InvocationHandler)
    except OSError as error:
        raise UsageError(
            f"cannot listen on 127.0.0.1 port {port} (--port): {error.strerror or error}"
        ) from None
    server.emulator = emulator
    thread = threading.Thread(target=server.serve_forever, name="mme-front", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
