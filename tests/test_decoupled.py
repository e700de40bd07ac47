"""Decoupled (streaming) models as NVIDIA's python_backend examples shape them (`repeat`, `square`, written
in conftest, not copied): their cases replayed over gRPC streaming and HTTP generate_stream through a real
Triton, serve's streaming example run against the served model, a load test's first and last response
times, and what a multi-model endpoint does with them."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from packager.endpoint import emulating, fronted
from packager.loadtest import LoadReport, TritonGrpcStream, loadtest_table, request_body, run_levels
from packager.modeldir import Case, ModelDir, adopt, load_cases
from packager.release.stores.file import FileStore
from packager.replay import CaseResult, replay_cases
from packager.settings import DEFAULT_RUNTIME
from packager.triton import Server, example_for
from packager.triton.local import LocalLauncher
from packager.validation import validate_model
from tests.conftest import (
    REPEAT,
    REPEAT_CONFIG,
    SQUARE,
    SQUARE_CONFIG,
    RunPackager,
    one_model_dir,
    runtime_client,
    serve_banner,
    start_packager,
)

# The same code as repeat with FP16 values, which Triton's generate endpoints do not read from JSON.
HALVES_CONFIG = REPEAT_CONFIG.replace('"repeat"', '"halves"').replace("TYPE_INT32", "TYPE_FP16")


def _tensor(name: str, values: list[int], datatype: str = "INT32") -> dict[str, object]:
    return {"name": name, "datatype": datatype, "shape": [len(values)], "data": values}


def _responses(*values: int, name: str = "OUT", datatype: str = "INT32") -> list[dict[str, object]]:
    return [{"outputs": [_tensor(name, [value], datatype)]} for value in values]


REPEAT_CASES: dict[str, object] = {
    "three": {"inputs": [_tensor("IN", [4, 5, 6])], "responses": _responses(4, 5, 6)},
    "wrong_value": {"inputs": [_tensor("IN", [4, 5, 6])], "responses": _responses(4, 50, 6)},
    "pending": {"inputs": [_tensor("IN", [7, 8])], "responses": None},
}
SQUARE_CASES: dict[str, object] = {
    "three": {"inputs": [_tensor("IN", [3])], "responses": _responses(3, 3, 3)},
    "zero": {"inputs": [_tensor("IN", [0])], "responses": []},
    "too_few": {"inputs": [_tensor("IN", [3])], "responses": _responses(3, 3, 3, 3)},
    "too_many": {"inputs": [_tensor("IN", [3])], "responses": _responses(3)},
}
HALVES_CASES: dict[str, object] = {
    "two": {"inputs": [_tensor("IN", [1, 2], "FP16")], "responses": _responses(1, 2, datatype="FP16")}
}
MODELS: dict[str, tuple[str, str, dict[str, object]]] = {
    "repeat": (REPEAT, REPEAT_CONFIG, REPEAT_CASES),
    "square": (SQUARE, SQUARE_CONFIG, SQUARE_CASES),
    "halves": (REPEAT, HALVES_CONFIG, HALVES_CASES),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model directory per decoupled model, each with its cases."""
    parent = tmp_path_factory.mktemp("decoupled")
    return {name: one_model_dir(parent, name, *spec) for name, spec in MODELS.items()}


@pytest.fixture(scope="module")
def server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One Triton for the module serving every decoupled model."""
    repository = tmp_path_factory.mktemp("repository")
    for name, model in models.items():
        (repository / name).symlink_to(model / name)
    launcher = LocalLauncher.for_runtime(DEFAULT_RUNTIME)
    with launcher.start(repository, tmp_path_factory.mktemp("logs") / "triton.log") as running:
        for name in models:
            running.load(name)
        yield running


def _cases(model: Path) -> dict[str, Case]:
    cases = load_cases(model, validate_model(ModelDir(model)).triton_models, model.name)
    return {case.id: case for case in cases}


def _replayed(server: Server, model: Path, *ids: str) -> dict[tuple[str, str], CaseResult]:
    cases = _cases(model)
    results = replay_cases(model.name, server, cases=[cases[case] for case in ids])
    return {(result.case, result.protocol): result for result in results}


def test_streams_replay_over_grpc_streaming_and_generate_stream(
    server: Server, models: dict[str, Path]
) -> None:
    """repeat sends the final flag alone after its responses, square with its last one (alone for 0): both
    end a stream, over both protocols."""
    results = {
        **_replayed(server, models["repeat"], "three"),
        **{
            (f"square/{case}", protocol): result
            for (case, protocol), result in _replayed(server, models["square"], "three", "zero").items()
        },
    }
    assert {key: (result.status, result.via, result.problems) for key, result in results.items()} == {
        ("three", "http"): ("ok", "generate_stream", ()),
        ("three", "grpc"): ("ok", "stream", ()),
        ("square/three", "http"): ("ok", "generate_stream", ()),
        ("square/three", "grpc"): ("ok", "stream", ()),
        ("square/zero", "http"): ("ok", "generate_stream", ()),
        ("square/zero", "grpc"): ("ok", "stream", ()),
    }


def test_a_wrong_value_is_reported_at_its_response(server: Server, models: dict[str, Path]) -> None:
    results = _replayed(server, models["repeat"], "wrong_value")
    for protocol in ("http", "grpc"):
        assert results["wrong_value", protocol].problems == (
            "response 1: OUT: 1 of 1 values differ: [0] expected 50, got 5",
        )


def test_too_few_and_too_many_responses_are_counted(server: Server, models: dict[str, Path]) -> None:
    results = _replayed(server, models["square"], "too_few", "too_many")
    for protocol in ("http", "grpc"):
        assert results["too_few", protocol].problems == (
            "expected 4 responses before the final flag, got 3: response 3 never came",
        )
        assert results["too_many", protocol].problems == (
            "expected 1 responses before the final flag, got 3; the 2 extra responses from response 1: "
            '[{"outputs": [{"name": "OUT", "datatype": "INT32", "shape": [1], "data": [3]}]}, '
            '{"outputs": [{"name": "OUT", "datatype": "INT32", "shape": [1], "data": [3]}]}]',
        )


def test_responses_not_written_yet_show_what_came_back_to_paste(
    server: Server, models: dict[str, Path]
) -> None:
    (problem,) = _replayed(server, models["repeat"], "pending")["pending", "grpc"].problems
    assert problem == (
        'the case does not give its responses yet ("responses" is null); got 2 responses: "responses": ['
        '{"outputs": [{"name": "OUT", "datatype": "INT32", "shape": [1], "data": [7]}, '
        '{"name": "IDX", "datatype": "UINT32", "shape": [1], "data": [0]}]}, '
        '{"outputs": [{"name": "OUT", "datatype": "INT32", "shape": [1], "data": [8]}, '
        '{"name": "IDX", "datatype": "UINT32", "shape": [1], "data": [1]}]}]'
    )


def test_a_case_generate_stream_cannot_carry_goes_over_grpc_streaming_only(
    server: Server, models: dict[str, Path]
) -> None:
    results = _replayed(server, models["halves"], "two")
    assert results["two", "grpc"].status == "ok"
    http = results["two", "http"]
    assert (http.status, http.passed, http.failed) == ("n/a", False, False)
    assert http.not_sent == (
        "generate_stream cannot carry it (input 'IN' is FP16, which Triton's generate endpoints do not read "
        "from JSON)"
    )


# `packager serve`: a working example for the top model, with its own case's inputs.
BLS_CONFIG = """name: "bls"
backend: "python"
input [ { name: "MODEL_NAME", data_type: TYPE_STRING, dims: [ 1 ] },
        { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] }, { name: "INPUT1", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
"""


def test_serves_example_sends_the_top_models_first_case(tmp_path: Path) -> None:
    """A BLS model's case names the model it calls; zeros would send an empty name."""
    case = {
        "inputs": [
            {"name": "MODEL_NAME", "datatype": "BYTES", "shape": [1], "data": ["add_sub"]},
            {"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]},
            {"name": "INPUT1", "datatype": "FP32", "shape": [4], "data": [4, 3, 2, 1]},
        ],
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [4], "data": None}],
    }
    model = one_model_dir(
        tmp_path, "bls", "class TritonPythonModel:\n    pass\n", BLS_CONFIG, {"add_sub": case}
    )
    triton_models = validate_model(ModelDir(model)).triton_models
    cases = load_cases(model, triton_models, "bls")
    example = example_for(
        "127.0.0.1:8000", "127.0.0.1:8001", model="bls", triton_models=triton_models, cases=cases
    )
    assert (example.sends, example.decoupled, example.python) == ("its case add_sub", False, None)
    assert example.curl is not None
    assert json.loads(shlex.split(example.curl)[-1])["inputs"] == case["inputs"]
    zeros = example_for("127.0.0.1:8000", "127.0.0.1:8001", model="bls", triton_models=triton_models)
    assert zeros.sends == "an example request (zeros)" and '"data": [""]' in str(zeros.curl)


def _example(serving: list[str]) -> list[str]:
    """The lines of serve's banner after "Try ...", up to "Ctrl-C ...", unindented."""
    start = next(index for index, line in enumerate(serving) if line.startswith("Try "))
    return [line[2:].rstrip("\n") for line in serving[start + 1 : -1]]


def _serving(monorepo: Path, model: str) -> Iterator[list[str]]:
    process = start_packager("serve", model, cwd=monorepo)
    try:
        yield serve_banner(process)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def monorepo(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A monorepo holding the decoupled models."""
    root = tmp_path_factory.mktemp("monorepo")
    (root / "pants.toml").write_text("")
    (root / "models").mkdir()
    for name, model in models.items():
        (root / "models" / name).symlink_to(model)
    return root


def test_serve_prints_a_generate_stream_curl_that_streams(monorepo: Path) -> None:
    for banner in _serving(monorepo, "repeat"):
        assert banner[-3] == (
            "Try repeat, the top-level model (decoupled: it streams), with its case pending over generate_stream, "
            "each response an event:\n"
        )
        (curl,) = _example(banner)
        assert shlex.split(curl)[:3] == ["curl", "-sS", "-N"] and "/v2/models/repeat/generate_stream" in curl
        streamed = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, timeout=60, check=True
        )
    events = [json.loads(line.removeprefix("data: ")) for line in streamed.stdout.splitlines() if line]
    assert [(event["OUT"], event["IDX"]) for event in events] == [(7, 0), (8, 1)]


def test_serve_prints_python_that_streams_over_grpc_where_generate_stream_cannot(monorepo: Path) -> None:
    for banner in _serving(monorepo, "halves"):
        assert banner[-2 - len(_example(banner))].startswith(
            "Try halves, the top-level model (decoupled: it streams), with its case two over gRPC streaming "
            "(generate_stream cannot carry it: input 'IN' is FP16"
        )
        snippet = "\n".join(_example(banner))
        streamed = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.splitlines() == ["{'OUT': [1.0], 'IDX': [0]}", "{'OUT': [2.0], 'IDX': [1]}"]


# `packager loadtest`: a decoupled model's times to its first and last responses, over gRPC streaming.
def test_a_load_test_times_the_first_and_the_last_response(server: Server, models: dict[str, Path]) -> None:
    cases = [case for case in _cases(models["repeat"]).values() if case.id != "wrong_value"]
    requests = [request_body(case) for case in cases]
    target = TritonGrpcStream(server.endpoints.grpc)
    (level,) = run_levels(target, requests, concurrencies=[2], duration=0.5)
    assert level.errors == 0 and level.requests > 10
    assert 0 < level.first_p50_ms <= level.first_p95_ms <= level.first_p99_ms
    assert level.first_p50_ms <= level.p50_ms and level.first_p99_ms <= level.p99_ms
    report = LoadReport("repeat", target.description, 0.5, 100, 0.5, (level,), streamed=True)
    header = loadtest_table(report).splitlines()[0]
    assert re.split(r"\s{2,}", header) == [
        "concurrency",
        "requests",
        "errors",
        "req/s",
        "first p50 ms",
        "first p95 ms",
        "first p99 ms",
        "last p50 ms",
        "last p95 ms",
        "last p99 ms",
    ]
    assert " ms to the last response (objective 100 ms)" in report.verdict()


def test_the_loadtest_command_streams_a_decoupled_model(run_packager: RunPackager, monorepo: Path) -> None:
    arguments = ["--concurrency", "1,2", "--duration", "0.5", "--out", "dist/square-load"]
    result = run_packager("loadtest", "square", *arguments, cwd=monorepo)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((monorepo / "dist" / "square-load" / "loadtest.json").read_text())
    assert report["streamed"] is True and report["target"].startswith("Triton gRPC streaming at 127.0.0.1:")
    for level in report["levels"]:
        assert level["errors"] == 0 and level["first_p50_ms"] > 0 and level["p99_ms"] >= level["first_p50_ms"]
    assert (
        "| first p50 ms | first p95 ms | first p99 ms | last p50 ms |"
        in (monorepo / "dist" / "square-load" / "loadtest.md").read_text()
    )
    refused = run_packager("loadtest", "square", "--url", "127.0.0.1:1", cwd=monorepo)
    assert refused.returncode == 2
    assert "square is decoupled: it answers with a stream, which Triton's HTTP /infer (--url) refuses" in (
        refused.stderr
    )


# A multi-model endpoint: SageMaker cannot invoke a decoupled model there; the cold-start check streams.
def test_a_multi_model_endpoint_refuses_a_decoupled_model_as_sagemaker_does(
    run_packager: RunPackager, monorepo: Path, tmp_path: Path
) -> None:
    """InvokeEndpointWithResponseStream takes no TargetModel, and SageMaker's Triton front refuses a
    decoupled model's InvokeEndpoint with 400 (Triton's own /infer says 501)."""
    built = run_packager("build", "repeat", "--out", str(tmp_path), cwd=monorepo)
    assert built.returncode == 0, built.stdout + built.stderr
    store = FileStore(f"file://{tmp_path}", tmp_path)
    launcher = LocalLauncher.for_runtime(DEFAULT_RUNTIME)
    with emulating(store, launcher, log_path=tmp_path / "mme.log") as emulator, fronted(emulator) as url:
        client = runtime_client(url)
        body = json.dumps({"inputs": [_tensor("IN", [1, 2])]})
        with pytest.raises(client.exceptions.ModelError) as raised:
            client.invoke_endpoint(
                EndpointName="local", TargetModel="repeat_1.tar.gz", ContentType="application/json", Body=body
            )
    answer = raised.value.response
    assert (answer["OriginalStatusCode"], answer["OriginalMessage"]) == (
        400,
        "HTTP end point doesn't support models with decoupled transaction policy",
    )
    assert "Received client error (400) from the model" in answer["Error"]["Message"]
    assert (
        "TargetModel"
        not in client.meta.service_model.operation_model(
            "InvokeEndpointWithResponseStream"
        ).input_shape.members
    ), "SageMaker has no streaming invoke for a multi-model endpoint's target"


def test_the_cold_start_check_streams_a_decoupled_models_first_request(
    run_packager: RunPackager, monorepo: Path, tmp_path: Path
) -> None:
    built = run_packager("build", "repeat", "--cold-start", "--out", str(tmp_path), cwd=monorepo)
    assert built.returncode == 0, built.stdout + built.stderr
    line = next(line for line in built.stderr.splitlines() if line.startswith("cold start repeat_1.tar.gz"))
    assert re.search(r"first inference [0-9.]+ s \(over gRPC streaming: InvokeEndpoint refuses", line), line
    printed = run_packager("build", "repeat", "--cold-start", "--json", "--out", str(tmp_path), cwd=monorepo)
    (record,) = json.loads(printed.stdout)["artifacts"]
    cold = record["checked"]["cold_start"]
    assert cold["first_inference_over"] == "grpc_stream" and cold["first_inference_s"] > 0


def test_adopting_a_decoupled_model_writes_a_case_whose_responses_are_not_written_yet(tmp_path: Path) -> None:
    upstream = one_model_dir(tmp_path / "upstream", "repeat", REPEAT, REPEAT_CONFIG) / "repeat"
    adopted = adopt(upstream, tmp_path / "models")
    assert adopted.case_template is not None
    case = json.loads(adopted.case_template.read_text())
    assert case["responses"] is None and "outputs" not in case
    assert validate_model(ModelDir(adopted.path)).diagnostics == []
