"""Triton models as people write them, end to end: NVIDIA python_backend's shapes (written here, not copied) —
BLS calling a model by name synchronously and asynchronously, BLS calling a decoupled model, decoupled
`repeat` and `square`, auto-complete configs with and without batching, repositories without an ensemble —
each adopted unchanged, its cases written, replayed, built and pushed (with the cold-start check) to S3,
then invoked through the multi-model endpoint as boto3 would (real Triton, moto S3).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from packager.endpoint import emulating, fronted
from packager.release.stores.s3 import S3Store
from packager.settings import DEFAULT_RUNTIME
from packager.triton.local import LocalLauncher
from tests.conftest import (
    REPEAT,
    REPEAT_CONFIG,
    S3_CREDENTIALS,
    SQUARE,
    SQUARE_CONFIG,
    child_environment,
    git,
    runtime_client,
    s3_client,
)
from tests.test_adopt import ADD_SUB, ADD_SUB_CONFIG, BLS, BLS_CONFIG, model_repository
from tests.test_autocomplete import BACKEND_ONLY, add_sub_case, auto_complete

# BLS, asynchronously: each output from a call of its own, awaited together.
BLS_ASYNC = """import asyncio

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            inputs = [pb_utils.get_input_tensor_by_name(request, name) for name in ("INPUT0", "INPUT1")]
            calls = [
                pb_utils.InferenceRequest(
                    model_name="add_sub", requested_output_names=[name], inputs=inputs
                ).async_exec()
                for name in ("OUTPUT0", "OUTPUT1")
            ]
            answers = await asyncio.gather(*calls)
            for answer in answers:
                if answer.has_error():
                    raise pb_utils.TritonModelException(answer.error().message())
            outputs = [
                pb_utils.get_output_tensor_by_name(answer, name)
                for answer, name in zip(answers, ("OUTPUT0", "OUTPUT1"))
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""
BLS_ASYNC_CONFIG = ADD_SUB_CONFIG.replace('name: "add_sub"', 'name: "bls_async"')
# BLS calling a decoupled model: repeat's stream of values, summed.
BLS_STREAM = """import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN")
            stream = pb_utils.InferenceRequest(
                model_name="repeat", requested_output_names=["OUT"], inputs=[values]
            ).exec(decoupled=True)
            total = 0
            for response in stream:
                if response.has_error():
                    raise pb_utils.TritonModelException(response.error().message())
                out = pb_utils.get_output_tensor_by_name(response, "OUT")
                if out is not None:
                    total += int(out.as_numpy().sum())
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("TOTAL", np.array([total], np.int32))]))
        return responses
"""
BLS_STREAM_CONFIG = """name: "bls_stream"
backend: "python"
input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "TOTAL" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""
ADD_SUB_BODY = {
    "inputs": [
        {"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]},
        {"name": "INPUT1", "datatype": "FP32", "shape": [4], "data": [4, 3, 2, 1]},
    ]
}
ADD_SUB_OUTPUTS: dict[str, list[Any]] = {"OUTPUT0": [5.0, 5.0, 5.0, 5.0], "OUTPUT1": [-3.0, -1.0, 1.0, 3.0]}
AUTO_OUTPUTS: dict[str, list[Any]] = {
    "OUTPUT0": [2.0, 3.0, 4.0, 5.0],
    "OUTPUT1": [0.0, 1.0, 2.0, 3.0],
}  # add_sub_case's


def _int32(name: str, values: list[int]) -> dict[str, object]:
    return {"name": name, "datatype": "INT32", "shape": [len(values)], "data": values}


def _add_sub_case() -> dict[str, object]:
    outputs = [
        {"name": name, "datatype": "FP32", "shape": [4], "data": data}
        for name, data in ADD_SUB_OUTPUTS.items()
    ]
    return {**ADD_SUB_BODY, "outputs": outputs}


def _repeat_response(value: int, index: int) -> dict[str, object]:
    idx = {"name": "IDX", "datatype": "UINT32", "shape": [1], "data": [index]}
    return {"outputs": [_int32("OUT", [value]), idx]}


# Each upstream shape: its Triton models (config, or None for a model.py alone; model.py), the case its
# adopted model directory replays, and what the endpoint answers for that case's inputs, each output's
# values flat (None: the endpoint refuses it, as SageMaker's Triton front refuses a decoupled model).
SHAPES: dict[
    str, tuple[dict[str, tuple[str | None, str]], dict[str, object], dict[str, list[Any]] | None]
] = {
    "bls_sync": (
        {"add_sub": (ADD_SUB_CONFIG, ADD_SUB), "bls": (BLS_CONFIG, BLS)},
        _add_sub_case(),
        ADD_SUB_OUTPUTS,
    ),
    "bls_async": (
        {"add_sub": (ADD_SUB_CONFIG, ADD_SUB), "bls_async": (BLS_ASYNC_CONFIG, BLS_ASYNC)},
        _add_sub_case(),
        ADD_SUB_OUTPUTS,
    ),
    "bls_stream": (
        {"repeat": (REPEAT_CONFIG, REPEAT), "bls_stream": (BLS_STREAM_CONFIG, BLS_STREAM)},
        {"inputs": [_int32("IN", [1, 2, 3])], "outputs": [_int32("TOTAL", [6])]},
        {"TOTAL": [6]},
    ),
    "repeat": (
        {"repeat": (REPEAT_CONFIG, REPEAT)},
        {"inputs": [_int32("IN", [4, 5])], "responses": [_repeat_response(4, 0), _repeat_response(5, 1)]},
        None,
    ),
    "square": (
        {"square": (SQUARE_CONFIG, SQUARE)},
        {"inputs": [_int32("IN", [2])], "responses": [{"outputs": [_int32("OUT", [2])]}] * 2},
        None,
    ),
    "auto_batch": (
        {"auto_batch": (BACKEND_ONLY, auto_complete(4))},
        add_sub_case(batched=True),
        AUTO_OUTPUTS,
    ),
    "auto_nobatch": ({"auto_nobatch": (None, auto_complete(0))}, add_sub_case(batched=False), AUTO_OUTPUTS),
}


def _upstream(parent: Path, name: str) -> Path:
    """The shape `name` as upstream lays it out: a repository of model directories, or one model directory
    (model.py alone where its config is auto-completed)."""
    models, _, _ = SHAPES[name]
    if len(models) > 1:
        return model_repository(
            parent / name, {model: (config or "", code) for model, (config, code) in models.items()}
        )
    ((model, (config, code)),) = models.items()
    root = parent / name / model
    (root / "1").mkdir(parents=True)
    (root / "1" / "model.py").write_text(code)
    if config is not None:
        (root / "config.pbtxt").write_text(config)
    return root


@pytest.fixture(scope="module")
def adopted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed monorepo holding every shape, adopted with no change to its code, its case written."""
    work = tmp_path_factory.mktemp("upstream")
    repo = work / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "pants.toml").write_text("")
    (repo / ".gitignore").write_text("dist/\n")
    git(repo, "init", "-q", "-b", "main")
    environment = child_environment()
    for name, (_, case, _) in SHAPES.items():
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "packager",
                "adopt",
                str(_upstream(work / "upstream", name)),
                "--name",
                name,
            ],
            cwd=repo,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        cases = repo / "models" / name / "tests" / "cases"
        for template in cases.glob("*.json"):
            template.unlink()
        cases.mkdir(parents=True, exist_ok=True)
        (cases / "upstream.json").write_text(json.dumps(case, indent=2) + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "upstream shapes, adopted")
    return repo


STAGING = "s3://upstream-staging/models"


@pytest.fixture(scope="module")
def staging(moto_endpoint: str) -> Iterator[dict[str, str]]:
    """A staging bucket on moto, and the environment that points the packager and boto3 at it."""
    environment = {**S3_CREDENTIALS, "AWS_ENDPOINT_URL_S3": moto_endpoint, "PACKAGER_STAGING_URI": STAGING}
    s3_client(moto_endpoint).create_bucket(Bucket="upstream-staging")
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in environment.items():
            patch.setenv(variable, value)
        yield environment


@pytest.fixture(scope="module")
def pushed(adopted: Path, staging: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`packager push` of every shape from a feature branch: each report, by model."""
    result = subprocess.run(
        [sys.executable, "-m", "packager", "push", *SHAPES, "--branch", "feature/upstream", "--json"],
        cwd=adopted,
        env=child_environment(staging),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {report["model"]: report for report in json.loads(result.stdout)["models"]}


def test_each_shape_replays_builds_and_pushes_through_its_cold_start_check(
    pushed: dict[str, dict[str, Any]],
) -> None:
    assert sorted(pushed) == sorted(SHAPES)
    for name, report in pushed.items():
        assert report["outcome"] == "uploaded" and report["replay"]["passed"] is True, (name, report)
        cold = report["checked"]["cold_start"]
        assert cold["failed"] is None and cold["first_inference_status"] == 200, (name, cold)
    streamed = {
        name
        for name, report in pushed.items()
        if report["checked"]["cold_start"]["first_inference_over"] == "grpc_stream"
    }
    assert streamed == {"repeat", "square"}, "a decoupled top model's first request goes over gRPC streaming"


def test_each_shape_is_invoked_through_the_endpoint(
    pushed: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """boto3's InvokeEndpoint for each pushed artifact, by its key in staging: the answer its case expects,
    or, for a decoupled model, the refusal SageMaker's Triton front gives (an endpoint does not stream)."""
    store = S3Store.from_uri(STAGING)
    launcher = LocalLauncher.for_runtime(DEFAULT_RUNTIME)
    with emulating(store, launcher, log_path=tmp_path / "mme.log") as emulator, fronted(emulator) as url:
        client = runtime_client(url)
        for name, (_, case, answer) in SHAPES.items():
            target = str(pushed[name]["uri"]).removeprefix(f"{STAGING}/")
            body = json.dumps({"inputs": case["inputs"]}).encode()
            if answer is None:
                with pytest.raises(client.exceptions.ModelError) as refused:
                    client.invoke_endpoint(
                        EndpointName="mme", TargetModel=target, ContentType="application/json", Body=body
                    )
                assert refused.value.response["OriginalStatusCode"] == 400, name
                assert "decoupled" in refused.value.response["OriginalMessage"], name
                continue
            response = client.invoke_endpoint(
                EndpointName="mme", TargetModel=target, ContentType="application/json", Body=body
            )
            outputs = {
                output["name"]: output["data"] for output in json.loads(response["Body"].read())["outputs"]
            }
            assert outputs == answer, name
    store.close()
