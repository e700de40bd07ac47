"""The load loop: closed-loop workers, each on a persistent connection of its own, sending requests back
to back for a fixed time at each concurrency level.

Why threads over `http.client` (and a boto3 client per thread for SageMaker): every request body is built
once, up front (`requests`), so a worker's work per request is a write and a read on a keep-alive socket,
during which the GIL is released; a thread per connection is then enough to keep a model server busy at
the concurrencies that matter here (1..64), each latency is measured around exactly one request, and it
needs nothing beyond the standard library and boto3, both already in the lockfile. The alternatives:
tritonclient.http serializes the tensors again on every request and runs on geventhttpclient (greenlets;
a client per thread at best); tritonclient.http.aio (aiohttp, in the lockfile too) would do for Triton,
but boto3 has no async API, so the SageMaker path would need threads anyway and the two paths would
measure differently; locust is not in the lockfile and brings gevent's monkey-patching with it.

The same loop drives every target: KServe v2 HTTP to a Triton, `invoke_endpoint` to a SageMaker endpoint
(or an emulator of one at `endpoint_url`), and, for a decoupled model, a gRPC stream per worker to a Triton
(tritonclient.grpc: its stream callback runs on gRPC's thread, so each latency is still one request's):
there a request lasts until its final flag, and the time to its first response is recorded too.

Before the first level every request is sent once (`prime`: cold starts are not steady-state load).
Each level is bounded: a warm-up (not measured), then `duration` seconds; a worker starts no request after
the deadline, sends at most MAX_REQUESTS_PER_WORKER, and waits at most REQUEST_TIMEOUT for one answer.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import tritonclient.grpc as grpcclient

from packager.errors import EnvironmentFailure, UsageError
from packager.loadtest.analysis import Level, summarize
from packager.loadtest.requests import RequestBody
from packager.replay import GrpcStream

REQUEST_TIMEOUT = 60.0  # SageMaker's limit on an invocation
MAX_REQUESTS_PER_WORKER = 200_000
MAX_ERROR_SAMPLES = 3


class RequestFailed(Exception):
    """The server answered, but not with a result."""


class Connection(Protocol):
    """One worker's persistent connection: sends a request and raises on any failure."""

    def send(self, request: RequestBody) -> float | None:
        """Send one request and read its whole answer (raise if it failed); the seconds to its first
        response where the answer is a stream of them (None otherwise)."""

    def close(self) -> None:
        """Close the connection."""


class Target(Protocol):
    """Where the load goes: opens one connection per worker."""

    description: str

    def connect(self) -> Connection:
        """A new connection, for one worker."""


def host_port(url: str) -> tuple[str, int]:
    """`host:port` (or `http://host:port`) as its parts."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    if parts.scheme not in ("", "http") or not parts.hostname or parts.path.strip("/"):
        raise UsageError(f"--url {url}: give host:port of Triton's HTTP endpoint (KServe v2, plain HTTP)")
    try:
        return parts.hostname, parts.port or 80
    except ValueError:
        raise UsageError(f"--url {url}: the port is not a number in 1..65535") from None


class _TritonConnection:
    def __init__(self, host: str, port: int) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)

    def send(self, request: RequestBody) -> None:
        try:
            self.connection.request(
                "POST", f"/v2/models/{request.model}/infer", request.body, request.http_headers
            )
            response = self.connection.getresponse()
            answer = response.read()
        except Exception:
            self.connection.close()  # reopened by the next request
            raise
        if response.status != 200:
            raise RequestFailed(f"HTTP {response.status}: {answer[:200].decode(errors='replace')}")

    def close(self) -> None:
        self.connection.close()


class TritonHttp:
    """A Triton (or any KServe v2 HTTP server) at `host:port`: POST /v2/models/<model>/infer."""

    def __init__(self, url: str) -> None:
        self.host, self.port = host_port(url)
        self.description = f"Triton at {self.host}:{self.port}"

    def connect(self) -> Connection:
        return _TritonConnection(self.host, self.port)


class _StreamConnection:
    def __init__(self, address: str) -> None:
        self.client = grpcclient.InferenceServerClient(address)
        self.stream = GrpcStream(self.client)

    def send(self, request: RequestBody) -> float | None:
        return self.stream.request(request.model, request.inputs, REQUEST_TIMEOUT).first_s

    def close(self) -> None:
        self.stream.close()
        self.client.close()


class TritonGrpcStream:
    """A Triton's gRPC endpoint at `host:port`, a stream per worker: each request lasts until its final flag
    (a decoupled model's responses), and the time to its first response is recorded too."""

    def __init__(self, url: str) -> None:
        self.host, self.port = host_port(url)
        self.description = f"Triton gRPC streaming at {self.host}:{self.port}"

    def connect(self) -> Connection:
        return _StreamConnection(f"{self.host}:{self.port}")


class _SageMakerConnection:
    def __init__(self, client: Any, endpoint: str, target_model: str | None) -> None:
        self.client = client
        self.endpoint = endpoint
        self.target_model = target_model

    def send(self, request: RequestBody) -> None:
        arguments: dict[str, Any] = {
            "EndpointName": self.endpoint,
            "ContentType": request.sagemaker_content_type,
            "Body": request.body,
        }
        if self.target_model is not None:
            arguments["TargetModel"] = self.target_model
        response = self.client.invoke_endpoint(**arguments)
        response["Body"].read()

    def close(self) -> None:
        self.client.close()


class SageMakerEndpoint:
    """A SageMaker endpoint through boto3's sagemaker-runtime `invoke_endpoint` (TargetModel: a
    multi-model endpoint's model), or an emulator of one at `endpoint_url`. No retries: a failed call is
    an error of the test. Without credentials, a local `endpoint_url` is called unsigned."""

    def __init__(
        self, endpoint: str, endpoint_url: str | None = None, target_model: str | None = None
    ) -> None:
        self.endpoint = endpoint
        self.endpoint_url = endpoint_url
        self.target_model = target_model
        self.unsigned: bool | None = None
        model = f", TargetModel {target_model}" if target_model else ""
        self.description = f"SageMaker endpoint {endpoint}{model}" + (
            f" at {endpoint_url}" if endpoint_url else ""
        )

    def connect(self) -> Connection:
        import boto3  # only the SageMaker path pays for it
        from botocore import UNSIGNED
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        session = boto3.session.Session()
        options: dict[str, Any] = {
            "retries": {"total_max_attempts": 1},
            "max_pool_connections": 1,
            "read_timeout": REQUEST_TIMEOUT,
            "connect_timeout": REQUEST_TIMEOUT,
        }
        if self.unsigned is None:  # looked up once: the credential chain may ask the network
            self.unsigned = self.endpoint_url is not None and session.get_credentials() is None
        if self.unsigned:
            options["signature_version"] = UNSIGNED
        region = session.region_name or ("us-east-1" if self.endpoint_url else None)
        try:
            client = session.client(
                "sagemaker-runtime",
                region_name=region,
                endpoint_url=self.endpoint_url,
                config=Config(**options),
            )
        except BotoCoreError as error:
            raise EnvironmentFailure(f"sagemaker-runtime client: {error}") from None
        return _SageMakerConnection(client, self.endpoint, self.target_model)


@dataclass
class _Samples:
    latencies: list[float] = field(default_factory=list)
    firsts: list[float] = field(default_factory=list)  # a stream's time to its first response
    errors: Counter[str] = field(default_factory=Counter)
    first_error: tuple[float, str] | None = None  # when the worker's first error came, and what it said


def run_level(
    target: Target, requests: Sequence[RequestBody], *, concurrency: int, duration: float, warmup: float
) -> Level:
    """`concurrency` workers sending `requests` in turn (each worker starting at its own offset), back to
    back, for `warmup` then `duration` seconds; the level measured over the `duration` only."""
    if not requests:
        raise UsageError("a load test needs at least one request")
    connections = [target.connect() for _ in range(concurrency)]
    samples = [_Samples() for _ in range(concurrency)]
    start = time.perf_counter() + 0.05  # every worker starts together
    measured_from, deadline = start + warmup, start + warmup + duration

    def work(index: int) -> None:
        connection, sample = connections[index], samples[index]
        time.sleep(max(0.0, start - time.perf_counter()))
        for sent in range(MAX_REQUESTS_PER_WORKER):
            began = time.perf_counter()
            if began >= deadline:
                break
            error, first = None, None
            try:
                first = connection.send(requests[(index + sent) % len(requests)])
            except Exception as failure:  # counted, in the failing client's words
                error = f"{type(failure).__name__}: {failure}"
            latency = time.perf_counter() - began
            if began >= measured_from:
                if error is not None:
                    sample.errors[error] += 1
                    sample.first_error = sample.first_error or (began, error)
                    continue
                sample.latencies.append(latency)
                if first is not None:
                    sample.firsts.append(first)

    workers = [threading.Thread(target=work, args=(index,), daemon=True) for index in range(concurrency)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=max(0.0, deadline - time.perf_counter()) + REQUEST_TIMEOUT + 5)
    finally:
        for connection in connections:
            connection.close()
    errors: Counter[str] = Counter()
    for sample in samples:
        errors.update(sample.errors)
    latencies = [latency for sample in samples for latency in sample.latencies]
    firsts = [first for sample in samples for first in sample.firsts]
    shown = [f"{message} (×{count})" for message, count in errors.most_common(MAX_ERROR_SAMPLES)]
    first_error = min((sample.first_error for sample in samples if sample.first_error), default=None)
    return summarize(
        concurrency,
        latencies,
        errors=sum(errors.values()),
        seconds=duration,
        error_samples=shown,
        firsts=firsts,
        first_error=first_error[1] if first_error else "",
    )


def prime(target: Target, requests: Sequence[RequestBody]) -> None:
    """Send each request once, unmeasured, before the first level: a multi-model endpoint loads its target
    on the first request (a cold start that can outlast a level), and Triton's first requests to a model
    cost more. A failure stops it, and is left for the levels to count."""
    connection = target.connect()
    try:
        for request in requests:
            try:
                connection.send(request)
            except Exception:  # counted where it is measured, in the levels; one wait is enough
                break
    finally:
        connection.close()


def warmup_for(duration: float) -> float:
    """The unmeasured warm-up before a level: a quarter of its duration, at most 2 s."""
    return min(2.0, duration / 4)


def run_levels(
    target: Target,
    requests: Sequence[RequestBody],
    *,
    concurrencies: Sequence[int],
    duration: float,
    progress: Callable[[Level], None] | None = None,
) -> list[Level]:
    """Every concurrency level in turn against `target`, after `prime`."""
    prime(target, requests)
    levels = []
    for concurrency in concurrencies:
        level = run_level(
            target, requests, concurrency=concurrency, duration=duration, warmup=warmup_for(duration)
        )
        if progress is not None:
            progress(level)
        levels.append(level)
    return levels
