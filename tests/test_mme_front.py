"""The multi-model endpoint's HTTP front against hostile requests, in front of a fake backend (what the
emulator does with a request does not matter here): TargetModel keys, SageMaker's body limit, malformed
headers, slow clients, and 200 concurrent connections."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from packager.endpoint import MAX_BODY, MAX_TARGET, Answer, Connections, TargetInvalid, fronted
from packager.endpoint.front import FrontServer

INVOCATIONS = "/endpoints/mme/invocations"
TARGET = "X-Amzn-SageMaker-Target-Model"


class Recorder:
    """A backend that answers every request with what it was given (after `delay` seconds, or once `gate`
    is open); it refuses a target under missing/ as the emulator refuses a key with nothing there, and
    fails under crash/."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.delay = delay
        self.gate = gate
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def invoke(self, target: str, body: bytes, content_type: str | None) -> Answer:
        with self._lock:
            self.calls.append((target, len(body)))
        if target.startswith("missing/"):
            raise TargetInvalid(f"no model {target} in memory://")
        if target.startswith("crash/"):
            raise RuntimeError("the backend broke")
        if self.gate is not None:
            self.gate.wait()
        time.sleep(self.delay)
        return Answer(json.dumps({"target": target, "bytes": len(body)}).encode(), "application/json")


@contextmanager
def _front(backend: Recorder, **connections: Any) -> Iterator[int]:
    """The front on a free port (its connections as given); yields the port."""
    with fronted(backend, connections=Connections(**connections)) as url:
        yield int(url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def port(recorder: Recorder) -> Iterator[int]:
    """One front for the module's requests that need no settings of their own."""
    with _front(recorder) as bound:
        yield bound


def _request(target: str | bytes | None, body: bytes = b"{}", extra: bytes = b"") -> bytes:
    """An InvokeEndpoint request as bytes on the wire (`extra`: more header lines)."""
    lines = [f"POST {INVOCATIONS} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Content-Type: application/json"]
    if target is not None:
        lines.append(TARGET.encode() + b": " + (target.encode() if isinstance(target, str) else target))
    lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n" + body


def _exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send `data` on a fresh connection and read one answer: status, headers, JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(data)
        return _answer(connection)


def _answer(connection: socket.socket) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = http.client.HTTPResponse(connection)
    response.begin()
    body = json.loads(response.read())
    return response.status, {name.lower(): value for name, value in response.getheaders()}, body


def _runtime_client(port: int) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_a_valid_request_reaches_the_backend(port: int, recorder: Recorder) -> None:
    longest = "m/" * (MAX_TARGET // 2 - 8) + "churn_1.tar.gz"
    status, headers, body = _exchange(port, _request(longest))
    assert (status, body) == (200, {"target": longest, "bytes": 2}), body
    assert headers["x-amzn-invoked-production-variant"] == "AllTraffic"


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("../../etc/shadow", "is not a key in the store: it has an empty, '.' or '..' segment"),
        ("models/../../etc/passwd", "is not a key in the store: it has an empty, '.' or '..' segment"),
        ("/etc/passwd", "is not a key in the store: it is an absolute path"),
        ("/tmp/store/churn_1.tar.gz", "is not a key in the store: it is an absolute path"),
        ("feature//churn_1.tar.gz", "is not a key in the store: it has an empty, '.' or '..' segment"),
        ("./churn_1.tar.gz", "is not a key in the store: it has an empty, '.' or '..' segment"),
        ("feature/", "is not a key in the store: it has an empty, '.' or '..' segment"),
        ("..\\..\\etc\\shadow", "is not a key in the store: it has a backslash"),
        (b"churn\x00.tar.gz", "has a character outside printable ASCII"),
        (b"churn\x1b[31m.tar.gz", "has a character outside printable ASCII"),
        (b"churn\t1.tar.gz", "has a character outside printable ASCII"),
        ("chürn_1.tar.gz".encode("latin-1"), "has a character outside printable ASCII"),
        ("c" * (MAX_TARGET + 1), f"is {MAX_TARGET + 1} characters long; SageMaker allows at most 1024"),
        ("c" * 5000, "is 5000 characters long; SageMaker allows at most 1024"),
    ],
)
def test_a_target_model_that_is_not_a_key_is_a_validation_error(
    port: int, recorder: Recorder, target: str | bytes, why: str
) -> None:
    before = len(recorder.calls)
    status, headers, body = _exchange(port, _request(target))
    assert status == 400 and headers["x-amzn-errortype"] == "ValidationError", body
    assert why in body["message"] and len(body["message"]) < 400
    assert len(recorder.calls) == before, "the backend never saw it"


def test_no_target_model_is_a_validation_error(port: int) -> None:
    status, headers, body = _exchange(port, _request(None))
    assert status == 400 and headers["x-amzn-errortype"] == "ValidationError"
    assert "needs a TargetModel" in body["message"]
    status, headers, body = _exchange(port, _request(None, extra=f"{TARGET}: a\r\n{TARGET}: b\r\n".encode()))
    assert status == 400 and f"more than one {TARGET} header" in body["message"]


def test_a_backend_failure_is_an_internal_failure_not_a_reset(port: int) -> None:
    status, headers, body = _exchange(port, _request("crash/x.tar.gz"))
    assert (status, headers["x-amzn-errortype"]) == (500, "InternalFailure")
    assert body == {"message": "the endpoint failed: the backend broke"}


def test_boto3_raises_the_modeled_errors(port: int) -> None:
    client = _runtime_client(port)
    with pytest.raises(client.exceptions.ValidationError, match="is not a key in the store"):
        client.invoke_endpoint(EndpointName="mme", TargetModel="../x.tar.gz", Body=b"{}")
    with pytest.raises(ClientError) as raised:
        client.invoke_endpoint(EndpointName="mme", TargetModel="x.tar.gz", Body=b"0" * (MAX_BODY + 1))
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Error"] == {"Code": "413", "Message": f"HTTP content length exceeded {MAX_BODY} bytes."}


def test_a_body_over_the_limit_is_refused_before_it_is_read(port: int, recorder: Recorder) -> None:
    before = len(recorder.calls)
    head = _request("x.tar.gz").replace(b"Content-Length: 2", f"Content-Length: {700 * 1024**2}".encode())
    status, headers, body = _exchange(port, head[:-2])  # the headers only: no body is ever sent
    assert status == 413 and "x-amzn-errortype" not in headers
    assert body == {"message": f"HTTP content length exceeded {MAX_BODY} bytes."}
    assert headers["connection"] == "close" and len(recorder.calls) == before
    status, _, body = _exchange(port, _request("x.tar.gz", b"0" * MAX_BODY))
    assert (status, body["bytes"]) == (200, MAX_BODY), "6 MB exactly is served"


def test_expect_100_continue_is_answered_once_the_headers_are_acceptable(port: int) -> None:
    """A client that waits for `100 Continue` before its body is told 413 instead when the body would
    be too large, and sends nothing."""
    expect = b"Expect: 100-continue\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(_request("x.tar.gz", extra=expect)[:-2])
        assert connection.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(b"{}")
        assert _answer(connection)[0] == 200
    too_large = _request("x.tar.gz", extra=expect).replace(b"Length: 2", f"Length: {MAX_BODY + 1}".encode())
    status, _, body = _exchange(port, too_large[:-2])
    assert status == 413 and body["message"] == f"HTTP content length exceeded {MAX_BODY} bytes."


def _chunked(target: str, chunks: list[bytes]) -> bytes:
    head = (
        f"POST {INVOCATIONS} HTTP/1.1\r\nHost: x\r\n{TARGET}: {target}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head.encode() + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


def test_a_chunked_body_is_counted_as_it_is_read(port: int, recorder: Recorder) -> None:
    status, _, body = _exchange(port, _chunked("x.tar.gz", [b'{"a"', b": 1}"]))
    assert (status, body) == (200, {"target": "x.tar.gz", "bytes": 8})
    before = len(recorder.calls)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(_chunked("x.tar.gz", [b"0" * MAX_BODY])[:-5])  # 6 MB: still within
        connection.sendall(b"1\r\n0\r\n")  # one byte more, and the client would go on
        status, headers, body = _answer(connection)
    assert status == 413 and body["message"] == f"HTTP content length exceeded {MAX_BODY} bytes."
    assert len(recorder.calls) == before


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        (_request("x.tar.gz").replace(b"Content-Length: 2\r\n", b""), 411, "needs Content-Length"),
        (_request("x.tar.gz").replace(b"Content-Length: 2", b"Content-Length: zz"), 400, "Content-Length"),
        (_request("x.tar.gz").replace(b"Content-Length: 2", b"Content-Length: -1"), 400, "Content-Length"),
        (_request("x.tar.gz").replace(b"Content-Length: 2", b"Content-Length: +2"), 400, "Content-Length"),
        (_request("x.tar.gz").replace(b"Content-Length: 2", b"Content-Length: 1e3"), 400, "Content-Length"),
        (
            _request("x.tar.gz").replace(b"Content-Length: 2", b"Content-Length: " + b"9" * 30),
            400,
            "Content-Length",
        ),
        (_request("x.tar.gz", extra=b"Content-Length: 2\r\n"), 400, "one Content-Length"),
        (_request("x.tar.gz", extra=b"Transfer-Encoding: chunked\r\n"), 400, "both Content-Length and"),
        (
            _chunked("x.tar.gz", [b"{}"]).replace(b"chunked", b"gzip, chunked"),
            400,
            "Transfer-Encoding 'gzip, chunked'",
        ),
        (_chunked("x.tar.gz", [b"{}"]).replace(b"2\r\n{}", b"zz\r\n{}"), 400, "chunk size"),
        (_request("x.tar.gz", extra=b"X-Long: " + b"a" * 70000 + b"\r\n"), 431, "Line too long"),
        (
            _request("x.tar.gz", extra=b"".join(b"X-%d: 1\r\n" % n for n in range(120))),
            431,
            "Too many headers",
        ),
        (b"POST /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "Request-URI Too Long"),
        (b"\r\n\r\n", 400, "no request line"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "Bad request"),
        (b"POST / HTTP/1.1 extra\r\n\r\n", 400, "Bad request"),
        (b"POST " + INVOCATIONS.encode() + b" HTTP/1.x\r\n\r\n", 400, "Bad request version"),
        (
            _request("x.tar.gz").replace(b"POST", b"GET"),
            404,
            "no operation at GET '/endpoints/mme/invocations'",
        ),
        (_request("x.tar.gz").replace(b"POST", b"BREW"), 404, "no operation at BREW"),
        (_request("x.tar.gz").replace(b"/invocations", b"/invocations/../x"), 404, "no operation at POST"),
        (_request("x.tar.gz").replace(INVOCATIONS.encode(), b"/"), 404, "no operation at POST '/'"),
    ],
)
def test_a_malformed_request_is_answered_in_the_services_shape(
    port: int, recorder: Recorder, request_bytes: bytes, status: int, message: str
) -> None:
    before = len(recorder.calls)
    answered, headers, body = _exchange(port, request_bytes)
    assert answered == status and message in body["message"], body
    expected_type = "UnknownOperationException" if status == 404 else "ValidationError"
    assert headers["x-amzn-errortype"] == expected_type and headers["content-type"] == "application/json"
    assert len(recorder.calls) == before


def test_a_connection_is_kept_after_a_refusal_only_once_the_body_was_read(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(_request("missing/x.tar.gz") + _request("x.tar.gz"))
        (first, headers, body), (second, _, _) = _answer(connection), _answer(connection)
    assert (first, second) == (400, 200) and "connection" not in headers, body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(_request("no/../key") + _request("x.tar.gz"))
        first, headers, body = _answer(connection)
        assert first == 400 and headers["connection"] == "close", "refused before its body was read"
        assert connection.recv(1) == b""


def test_a_slow_client_is_answered_408_and_an_idle_one_closed(recorder: Recorder) -> None:
    with _front(recorder, request_timeout=0.5) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(_request("x.tar.gz")[:40])  # and never the rest
            status, headers, body = _answer(slow)
        assert status == 408 and "did not arrive within 0.5 s" in body["message"]
    with _front(recorder, idle_timeout=0.5) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            assert idle.recv(1) == b"", "an idle connection is closed, without an answer"


def test_a_kept_alive_connection_gives_its_worker_up_to_a_waiting_one(recorder: Recorder) -> None:
    """One worker, one client that keeps its connection open (as boto3's pool does) and a second client:
    the second is served at once (not after the first's idle timeout), and the first is closed."""
    with _front(recorder, workers=1, idle_timeout=600) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as kept:
            kept.sendall(_request("x.tar.gz") * 2)
            answers = [_answer(kept) for _ in range(2)]
            assert [(status, "connection" in headers) for status, headers, _ in answers] == [(200, False)] * 2
            status, _, body = _exchange(port, _request("y.tar.gz"))
            assert (status, body["target"]) == (200, "y.tar.gz")
            assert kept.recv(1) == b"", "the idle connection was closed for the waiting one"


def test_an_answer_closes_its_connection_while_another_waits(recorder: Recorder) -> None:
    gate = threading.Event()
    server = FrontServer(0, Recorder(gate=gate), Connections(workers=1))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as first:
            first.sendall(_request("x.tar.gz"))
            with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as second:
                second.sendall(_request("y.tar.gz"))
                while not server.crowded():  # the second connection is accepted and waits for the worker
                    time.sleep(0.01)
                gate.set()
                status, headers, _ = _answer(first)
                assert (status, headers["connection"]) == (200, "close")
                assert _answer(second)[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_200_concurrent_connections_are_all_answered() -> None:
    """200 clients connect at once to a pool that serves far fewer at a time: every one is answered in
    full (they queue in the listen backlog), none is reset."""
    clients = 200
    backend = Recorder(delay=0.02)
    start = threading.Barrier(clients)
    outcomes: list[object] = [None] * clients

    def client(index: int, port: int) -> None:
        start.wait()
        try:
            status, _, body = _exchange(port, _request(f"t/{index}.tar.gz"), timeout=120)
            outcomes[index] = (status, body["target"])
        except OSError as error:
            outcomes[index] = error

    with _front(backend, workers=8) as port:
        threads = [threading.Thread(target=client, args=(index, port)) for index in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    failures = [outcome for outcome in outcomes if not isinstance(outcome, tuple)]
    assert not failures, f"{len(failures)} of {clients} failed: {failures[:3]}"
    assert outcomes == [(200, f"t/{index}.tar.gz") for index in range(clients)]
