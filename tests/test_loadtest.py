"""`packager loadtest`: the analysis with fixed numbers, request bodies of real cases, the load loop with
an in-process target, and the command end to end against a real local Triton and a stand-in SageMaker
runtime API on loopback."""

from __future__ import annotations

import json
import math
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from packager.loadtest import (
    LoadReport,
    RequestBody,
    knee,
    loadtest_markdown,
    percentile,
    recommended_target,
    request_body,
    run_level,
    run_levels,
    summarize,
)
from packager.loadtest.analysis import Level
from packager.modeldir import Case, ModelDir, load_cases, top_model
from packager.validation import validate_model
from tests.conftest import RunPackager, copy_example

EXAMPLES = Path(__file__).parent.parent / "models"


def _level(concurrency: int, throughput: float, p99: float, errors: int = 0) -> Level:
    return Level(concurrency, 100, errors, 1.0, throughput, p99 / 2, p99 * 0.9, p99)


def test_percentiles_interpolate_between_ranks_like_numpy() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.0]
    for q in (0, 25, 50, 90, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([2.5], 99) == 2.5
    assert math.isnan(percentile([], 50))


def test_summary_counts_errors_but_times_only_answers() -> None:
    level = summarize(4, [0.010, 0.020, 0.030, 0.040], errors=2, seconds=2.0, error_samples=["boom (×2)"])
    assert (level.requests, level.errors, level.throughput) == (6, 2, 2.0)
    assert level.p50_ms == pytest.approx(25.0) and level.p99_ms == pytest.approx(39.7)
    assert level.to_json()["error_samples"] == ["boom (×2)"]


def test_the_knee_is_the_fastest_level_within_the_objective() -> None:
    levels = [_level(1, 100, 5), _level(2, 190, 8), _level(4, 300, 30), _level(8, 320, 90)]
    chosen = knee(levels, p99_ms=50)
    assert chosen is not None and chosen.concurrency == 4
    # A level with errors never meets the objective, however fast.
    chosen = knee([*levels[:2], _level(4, 400, 10, errors=1)], p99_ms=50)
    assert chosen is not None and chosen.concurrency == 2
    # A tie goes to the lower concurrency.
    chosen = knee([_level(2, 200, 5), _level(4, 200, 6)], p99_ms=50)
    assert chosen is not None and chosen.concurrency == 2


def test_requests_that_all_fail_are_not_called_a_load_problem() -> None:
    failed = Level(1, 5, 5, 1.0, 0.0, math.nan, math.nan, math.nan, first_error="HTTP 400: bad input")
    report = LoadReport(
        "churn", "Triton", 1.0, 100.0, 0.5, (failed, Level(2, 9, 9, 1.0, 0.0, math.nan, math.nan, math.nan))
    )
    assert report.verdict() == (
        "Every request failed, at every concurrency (the first: HTTP 400: bad input): not a load problem. Fix "
        "what the error says (`packager replay churn` shows each case's answer), then load-test again."
    )
    some = LoadReport("churn", "Triton", 1.0, 100.0, 0.5, (failed, _level(2, 150, 9, errors=1)))
    assert some.verdict().startswith("No level meets p99 <= 100 ms without errors")


def test_no_level_within_the_objective_means_no_recommendation() -> None:
    report = LoadReport("churn", "Triton", 1.0, 2.0, 0.5, (_level(1, 100, 5), _level(2, 150, 9)))
    assert report.knee is None and report.recommendation is None
    assert report.to_json()["knee"] is None
    assert "No level meets p99 <= 2 ms" in loadtest_markdown(report)


def test_recommendation_is_per_minute_per_instance_with_headroom() -> None:
    assert recommended_target(250.0, 0.5) == 7500.0
    assert recommended_target(10.0, 0.8) == pytest.approx(480.0)
    report = LoadReport("churn", "Triton", 1.0, 50.0, 0.5, (_level(1, 100, 5), _level(2, 180, 9)))
    assert report.recommendation == 5400.0
    assert "target: 5400 = 180.0 req/s x 60 x headroom 0.5" in report.verdict()


def _cases(name: str) -> dict[str, Case]:
    report = validate_model(ModelDir(EXAMPLES / name))
    cases = load_cases(report.model.path, report.triton_models, top_model(report.triton_models))
    return {case.id: case for case in cases}


def test_a_batched_fp32_case_is_plain_triton_v2_json() -> None:
    case = _cases("churn")["batch_of_8"]
    body = request_body(case)
    assert body.json_size is None and body.http_headers == {"Content-Type": "application/json"}
    assert body.sagemaker_content_type == "application/json"
    (tensor,) = json.loads(body.body)["inputs"]
    assert (tensor["name"], tensor["shape"], tensor["datatype"]) == ("FEATURES", [8, 8], "FP32")
    assert np.allclose(np.array(tensor["data"], dtype=np.float32).reshape(8, 8), case.inputs[0].data)
    assert body.model == case.model == "churn"


def test_a_bytes_file_case_uses_the_binary_tensor_extension() -> None:
    case = _cases("digits")["batch_of_three"]
    body = request_body(case)
    assert body.json_size is not None
    assert body.http_headers["Inference-Header-Content-Length"] == str(body.json_size)
    assert body.sagemaker_content_type == (
        f"application/vnd.sagemaker-triton.binary+json;json-header-size={body.json_size}"
    )
    header = json.loads(body.body[: body.json_size])
    (tensor,) = header["inputs"]
    assert (tensor["name"], tensor["shape"], tensor["datatype"]) == ("IMAGE", [3, 1], "BYTES")
    # The binary part: each element as a 4-byte little-endian length, then its bytes (the PNG files).
    payload, files = body.body[body.json_size :], list(case.inputs[0].data.flat)
    assert tensor["parameters"]["binary_data_size"] == len(payload)
    offset = 0
    for content in files:
        (length,) = struct.unpack_from("<I", payload, offset)
        assert payload[offset + 4 : offset + 4 + length] == content and content.startswith(b"\x89PNG")
        offset += 4 + length
    assert offset == len(payload)


class _FlakyConnection:
    def __init__(self, sent: list[str]) -> None:
        self.sent = sent

    def send(self, request: RequestBody) -> None:
        time.sleep(0.002)
        self.sent.append(request.case)
        if request.case == "bad":
            raise RuntimeError("the server said no")

    def close(self) -> None:
        pass


class _FlakyTarget:
    description = "in-process"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def connect(self) -> _FlakyConnection:
        return _FlakyConnection(self.sent)


def test_the_load_loop_cycles_cases_counts_errors_and_stops_in_time() -> None:
    target = _FlakyTarget()
    requests = [RequestBody(name, "m", b"{}") for name in ("a", "b", "bad")]
    began = time.perf_counter()
    level = run_level(target, requests, concurrency=3, duration=0.3, warmup=0.1)
    assert time.perf_counter() - began < 1.0
    assert {"a", "b", "bad"} <= set(target.sent)
    assert level.concurrency == 3 and level.requests > 30
    assert level.errors == pytest.approx(level.requests / 3, abs=4)
    assert level.error_samples and "RuntimeError: the server said no" in level.error_samples[0]
    assert 1.5 < level.p50_ms < 50 and level.p99_ms >= level.p50_ms


def _sane(report: dict[str, object], concurrencies: list[int]) -> None:
    levels = report["levels"]
    assert isinstance(levels, list) and [level["concurrency"] for level in levels] == concurrencies
    for level in levels:
        assert level["errors"] == 0 and level["requests"] > 0 and level["throughput"] > 0
        assert level["p99_ms"] >= level["p95_ms"] >= level["p50_ms"] > 0


def test_loadtest_churn_against_a_local_triton(run_packager: RunPackager, tmp_path: Path) -> None:
    (tmp_path / "pants.toml").write_text("")
    copy_example("churn", tmp_path)
    result = run_packager("loadtest", "churn", "--concurrency", "1,2", "--duration", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "dist" / "loadtest" / "churn"
    report = json.loads((out / "loadtest.json").read_text())
    _sane(report, [1, 2])
    assert report["target"].startswith("Triton at 127.0.0.1:") and report["headroom"] == 0.5
    assert report["knee"] in (1, 2) and report["invocations_per_instance_target"] > 0
    markdown = (out / "loadtest.md").read_text()
    assert "| concurrency | requests | errors | req/s | p50 ms | p95 ms | p99 ms |" in markdown
    assert (out / "loadtest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "concurrency",
        "requests",
        "errors",
        "req/s",
        "p50",
        "ms",
        "p95",
        "ms",
        "p99",
        "ms",
    ]
    assert "SageMakerVariantInvocationsPerInstance target:" in result.stdout


class _StandIn(BaseHTTPRequestHandler):
    """The sagemaker-runtime InvokeEndpoint route, answering a fixed inference response."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body, written apart, wait out a delayed ACK (~40 ms)
    seen: list[tuple[str, str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(
            (
                self.path,
                self.headers.get("X-Amzn-SageMaker-Target-Model", ""),
                self.headers["Content-Type"],
                body,
            )
        )
        if self.path != "/endpoints/churn-ep/invocations":
            self.send_response(404)
            answer = b'{"message": "no such endpoint"}'
        else:
            self.send_response(200)
            answer = (
                b'{"outputs": [{"name": "PROBABILITY", "datatype": "FP32", "shape": [1, 1], "data": [0.1]}]}'
            )
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[str]:
    """The stand-in on a free loopback port, as an endpoint URL."""
    _StandIn.seen = []
    with ThreadingHTTPServer(("127.0.0.1", 0), _StandIn) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield "http://127.0.0.1:%d" % server.server_address[1]
        server.shutdown()


def test_loadtest_a_sagemaker_endpoint_through_boto3(
    run_packager: RunPackager, tmp_path: Path, stand_in: str
) -> None:
    (tmp_path / "pants.toml").write_text("")
    copy_example("churn", tmp_path)
    # No credentials anywhere: a local endpoint URL is then called unsigned.
    environment = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    arguments = ["--endpoint-url", stand_in, "--target-model", "churn_1.tar.gz", "--duration", "0.5"]
    result = run_packager(
        "loadtest",
        "churn",
        "--endpoint",
        "churn-ep",
        *arguments,
        "--concurrency",
        "1,2",
        "--json",
        cwd=tmp_path,
        env=environment,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "dist" / "loadtest" / "churn" / "loadtest.json").read_text())
    printed = json.loads(result.stdout)
    assert printed.pop("files")["png"].endswith("loadtest.png") and printed == report
    _sane(report, [1, 2])
    assert report["target"] == f"SageMaker endpoint churn-ep, TargetModel churn_1.tar.gz at {stand_in}"
    paths, models, types = (set(column) for column in list(zip(*_StandIn.seen, strict=True))[:3])
    assert (paths, models, types) == (
        {"/endpoints/churn-ep/invocations"},
        {"churn_1.tar.gz"},
        {"application/json"},
    )
    bodies = {json.loads(body)["inputs"][0]["shape"][0] for *_, body in _StandIn.seen}
    assert bodies == {1, 8, 20}, "every case of churn is in the mix"

    wrong = run_packager(
        "loadtest",
        "churn",
        "--endpoint",
        "nope",
        *arguments,
        "--concurrency",
        "1",
        cwd=tmp_path,
        env=environment,
    )
    assert wrong.returncode == 1
    assert "Every request failed, at every concurrency (the first: ClientError: An error occurred (404)" in (
        wrong.stdout
    )
    assert "not a load problem" in wrong.stdout and "lower the concurrency" not in wrong.stdout
    assert (
        "concurrency 1: ClientError: An error occurred (404)" in wrong.stderr
        and "no such endpoint" in wrong.stderr
    ), wrong.stderr


def test_usage_errors(run_packager: RunPackager, tmp_path: Path) -> None:
    (tmp_path / "pants.toml").write_text("")
    copy_example("churn", tmp_path)
    both = run_packager("loadtest", "churn", "--url", "127.0.0.1:1", "--endpoint", "e", cwd=tmp_path)
    assert both.returncode == 2 and "give --url or --endpoint, not both" in both.stderr
    levels = run_packager("loadtest", "churn", "--concurrency", "1,0", cwd=tmp_path)
    assert levels.returncode == 2 and "each level must be 1..256" in levels.stderr


def test_every_case_is_sent_once_before_the_first_level() -> None:
    target = _FlakyTarget()
    requests = [RequestBody(name, "m", b"{}") for name in ("a", "b", "bad", "c")]
    (level,) = run_levels(target, requests, concurrencies=[1], duration=0.1)
    assert target.sent[:3] == ["a", "b", "bad"], "priming stops at the first failure"
    assert level.concurrency == 1 and level.requests > 0


def test_a_server_that_refuses_is_counted_as_errors(run_packager: RunPackager, tmp_path: Path) -> None:
    (tmp_path / "pants.toml").write_text("")
    copy_example("churn", tmp_path)
    arguments = ["--url", "127.0.0.1:1", "--concurrency", "1", "--duration", "0.2", "--out", "report"]
    result = run_packager("loadtest", "churn", *arguments, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "concurrency 1: ConnectionRefusedError: " in result.stderr
    assert "Every request failed, at every concurrency (the first: ConnectionRefusedError: " in result.stdout
    report = json.loads((tmp_path / "report" / "loadtest.json").read_text())
    (level,) = report["levels"]
    assert level["errors"] == level["requests"] > 0 and level["p99_ms"] is None and report["knee"] is None
