"""Business logic scripting (BLS) through the multi-model endpoint: python steps that call another model of
their artifact by name, `pb_utils.InferenceRequest(model_name="add_sub", ...)`, synchronously (`exec`) and
asynchronously (`await ... async_exec()`), shaped as NVIDIA's python_backend examples are (written here),
loading what they call in initialize() (`pb_utils.load_model`), since an endpoint loads only the top-level
ensemble and its steps (the model-loading form of NVIDIA's BLS example; `packager adopt` puts a loader step
in front of a BLS model that does not).
Pushed through the cold-start check, served by the emulator through boto3 (real Triton, moto S3), side by
side with an artifact that holds models of the same names; and the cold-start failures, labelled."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from packager.endpoint import (
    ColdStart,
    ColdStartFailed,
    Emulator,
    Event,
    emulating,
    fronted,
    measure_cold_start,
)
from packager.release.stores import Store
from packager.release.stores.s3 import S3Store
from packager.settings import DEFAULT_RUNTIME
from packager.triton.local import LocalLauncher
from tests.conftest import (
    S3_CREDENTIALS,
    RunPackager,
    child_environment,
    git,
    new_model,
    runtime_client,
    s3_client,
)

# add_sub as upstream writes it (two FP32 vectors in, their sum and difference out), times a factor, so
# that two artifacts' add_sub answer apart.
ADD_SUB = """
import numpy as np
import triton_python_backend_utils as pb_utils

FACTOR = {factor}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            in_0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            in_1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            out_0 = pb_utils.Tensor("OUTPUT0", (FACTOR * (in_0 + in_1)).astype(np.float32))
            out_1 = pb_utils.Tensor("OUTPUT1", (FACTOR * (in_0 - in_1)).astype(np.float32))
            responses.append(pb_utils.InferenceResponse([out_0, out_1]))
        return responses
"""
LOAD_ADD_SUB = """
    def initialize(self, args):
        if not pb_utils.is_model_ready("add_sub"):
            pb_utils.load_model(model_name="add_sub")
"""
BLS_SYNC = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
{initialize}
    def execute(self, requests):
        responses = []
        for request in requests:
            inference_request = pb_utils.InferenceRequest(
                model_name={called},
                requested_output_names=["OUTPUT0", "OUTPUT1"],
                inputs=[
                    pb_utils.get_input_tensor_by_name(request, "INPUT0"),
                    pb_utils.get_input_tensor_by_name(request, "INPUT1"),
                ],
            )
            inference_response = inference_request.exec()
            if inference_response.has_error():
                raise pb_utils.TritonModelException(inference_response.error().message())
            outputs = [pb_utils.get_output_tensor_by_name(inference_response, n) for n in ("OUTPUT0", "OUTPUT1")]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""
BLS_ASYNC = """
import asyncio

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
{initialize}
    async def execute(self, requests):
        calls = [
            pb_utils.InferenceRequest(
                model_name="add_sub",
                requested_output_names=["OUTPUT0", "OUTPUT1"],
                inputs=[
                    pb_utils.get_input_tensor_by_name(request, "INPUT0"),
                    pb_utils.get_input_tensor_by_name(request, "INPUT1"),
                ],
            ).async_exec()
            for request in requests
        ]
        responses = []
        for inference_response in await asyncio.gather(*calls):
            if inference_response.has_error():
                raise pb_utils.TritonModelException(inference_response.error().message())
            outputs = [pb_utils.get_output_tensor_by_name(inference_response, n) for n in ("OUTPUT0", "OUTPUT1")]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""
VECTORS = """input [
  { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] },
  { name: "INPUT1", data_type: TYPE_FP32, dims: [ 4 ] }
]
"""
PYTHON_STEP = 'backend: "python"\n' + VECTORS + """output [
  { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] },
  { name: "OUTPUT1", data_type: TYPE_FP32, dims: [ 4 ] }
]
instance_group [ { count: 1, kind: KIND_CPU } ]
parameters: {
  key: "EXECUTION_ENV_PATH"
  value: { string_value: "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" }
}
"""
# The model an endpoint serves steps through these, each giving one output: the sum from the sync step,
# the difference from the async one.
TOP_STEPS = {"bls_sync": ("OUTPUT0", "SUM"), "bls_async": ("OUTPUT1", "DIFFERENCE")}


def _top(name: str, steps: list[str]) -> str:
    """The config of an ensemble `name` that steps through `steps` (of TOP_STEPS) side by side."""
    outputs = ",\n".join(
        f'  {{ name: "{TOP_STEPS[step][1]}", data_type: TYPE_FP32, dims: [ 4 ] }}' for step in steps
    )
    stepped = ",\n".join(f"""    {{
      model_name: "{step}"
      model_version: -1
      input_map {{ key: "INPUT0" value: "INPUT0" }}
      input_map {{ key: "INPUT1" value: "INPUT1" }}
      output_map {{ key: "{TOP_STEPS[step][0]}" value: "{TOP_STEPS[step][1]}" }}
    }}""" for step in steps)
    return (
        f'name: "{name}"\nplatform: "ensemble"\n{VECTORS}output [\n{outputs}\n]\n'
        f"ensemble_scheduling {{\n  step [\n{stepped}\n  ]\n}}\n"
    )


IN_0, IN_1 = [1.0, 2.0, 3.0, 4.0], [10.0, 10.0, 10.0, 10.0]
REQUEST = json.dumps(
    {
        "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": IN_0},
            {"name": "INPUT1", "datatype": "FP32", "shape": [4], "data": IN_1},
        ]
    }
).encode()
NOT_READY = "Model 'add_sub' is not ready"


def _expected(factor: int) -> dict[str, list[float]]:
    return {
        "SUM": [factor * (a + b) for a, b in zip(IN_0, IN_1, strict=True)],
        "DIFFERENCE": [factor * (a - b) for a, b in zip(IN_0, IN_1, strict=True)],
    }


def _bls_model(models: Path, name: str, lock: str, factor: int | None) -> None:
    """A model directory `name` (from `packager new`, for its environment) whose ensemble steps through
    bls_sync and bls_async, which load add_sub (times `factor`) and call it. With no factor (stray), its
    ensemble steps through bls_sync alone (Triton 2.51 was seen to crash when two parallel steps of an
    ensemble fail at once), which calls add_sub without loading it."""
    directory = new_model(models, name, lock)
    for step in ("preprocess", "postprocess"):
        shutil.rmtree(directory / step)
    shutil.rmtree(directory / "tests" / "cases")
    # stray's step names add_sub in a way no reading of its source can know (so validate lets it through)
    # and loads nothing: it holds add_sub, which an endpoint that loads only its ensemble never loads.
    called, initialize = ('"add_sub"', LOAD_ADD_SUB) if factor is not None else ('"add_" + "sub"', "")
    code = {
        "bls_sync": BLS_SYNC.format(initialize=initialize, called=called),
        "bls_async": BLS_ASYNC.format(initialize=initialize),
        "add_sub": ADD_SUB.format(factor=factor or 1),
    }
    steps = ["bls_sync", "bls_async", "add_sub"] if factor is not None else ["bls_sync", "add_sub"]
    for step in steps:
        (directory / step / "1").mkdir(parents=True)
        (directory / step / "1" / "model.py").write_text(code[step])
        (directory / step / "config.pbtxt").write_text(f'name: "{step}"\n{PYTHON_STEP}')
    top = [step for step in steps if step in TOP_STEPS]
    (directory / name / "config.pbtxt").write_text(_top(name, top))
    expected = _expected(factor or 1)
    outputs = [
        {"name": output, "datatype": "FP32", "shape": [4], "data": expected[output]}
        for output in (TOP_STEPS[step][1] for step in top)
    ]
    case = {"description": "sum and difference", "inputs": json.loads(REQUEST)["inputs"], "outputs": outputs}
    (directory / "tests" / "cases").mkdir()
    (directory / "tests" / "cases" / "sum_and_difference.json").write_text(json.dumps(case, indent=2))


@pytest.fixture(scope="module")
def bls_repo(tmp_path_factory: pytest.TempPathFactory, scaffold_lock: str) -> Path:
    """A committed monorepo with `bls` (add_sub adds and subtracts), `twin` (the same model names; its
    add_sub answers ten times as much) and `stray` (its step calls the add_sub it holds, which nothing
    loads)."""
    repo = tmp_path_factory.mktemp("bls") / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "pants.toml").write_text("")
    (repo / ".gitignore").write_text("dist/\npython_env.tar.gz\n")
    for name, factor in (("bls", 1), ("twin", 10), ("stray", None)):
        _bls_model(repo / "models", name, scaffold_lock, factor)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bls models")
    return repo


@pytest.fixture(scope="module")
def built(bls_repo: Path) -> Path:
    """The three artifacts, built into the repository's dist/."""
    subprocess.run(
        [sys.executable, "-m", "packager", "build", "bls", "twin", "stray"],
        cwd=bls_repo,
        env=child_environment(),
        check=True,
        capture_output=True,
        timeout=900,
    )
    return bls_repo / "dist"


@pytest.fixture(scope="module")
def store(moto_endpoint: str, built: Path) -> Iterator[Store]:
    """A bucket holding the three artifacts at its root."""
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in {**S3_CREDENTIALS, "AWS_ENDPOINT_URL_S3": moto_endpoint}.items():
            patch.setenv(variable, value)
        s3_client(moto_endpoint).create_bucket(Bucket="mme-bls")
        bucket = S3Store.from_uri("s3://mme-bls/models")
        for artifact in sorted(built.glob("*_1.tar.gz")):
            bucket.put_new(artifact.name, artifact, {})
        yield bucket
        bucket.close()


@pytest.fixture(scope="module")
def served(
    store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Emulator, Any, list[Event]]]:
    """The emulator on the bucket, boto3's client on its front, and the events it reported."""
    events: list[Event] = []
    launcher = LocalLauncher.for_runtime(DEFAULT_RUNTIME)
    log_path = tmp_path_factory.mktemp("mme-bls-logs") / "mme.log"
    with (
        emulating(store, launcher, log_path=log_path, listener=events.append) as emulator,
        fronted(emulator) as url,
    ):
        yield emulator, runtime_client(url), events


def _invoke(client: Any, target: str) -> dict[str, Any]:
    response = client.invoke_endpoint(
        EndpointName="mme", TargetModel=target, ContentType="application/json", Body=REQUEST
    )
    answer: dict[str, Any] = json.loads(response["Body"].read())
    return answer


def _outputs(answer: dict[str, Any]) -> dict[str, list[float]]:
    return {output["name"]: output["data"] for output in answer["outputs"]}


def _cold_start(events: list[Event], target: str) -> ColdStart:
    (cold,) = (event for event in events if isinstance(event, ColdStart) and event.target == target)
    return cold


def test_bls_steps_answer_through_the_endpoint_beside_an_artifact_of_the_same_model_names(
    served: tuple[Emulator, Any, list[Event]],
) -> None:
    """Each artifact's steps call its own add_sub, by the name its code gives, while both are loaded."""
    emulator, client, events = served
    bls = _invoke(client, "bls_1.tar.gz")
    assert bls["model_name"] == "bls" and _outputs(bls) == _expected(1)
    assert _outputs(_invoke(client, "twin_1.tar.gz")) == _expected(10)
    assert _outputs(_invoke(client, "bls_1.tar.gz")) == _expected(1), "bls still calls its own add_sub"
    assert emulator.loaded_targets() == ["twin_1.tar.gz", "bls_1.tar.gz"]
    held = [sorted(slot.holds) for slot in emulator.servers.slots]
    assert held == [["bls_1.tar.gz"], ["twin_1.tar.gz"]], "twin holds bls's names: a server of its own"
    first, second = _cold_start(events, "bls_1.tar.gz"), _cold_start(events, "twin_1.tar.gz")
    assert first.server_start_s == 0 and second.server_start_s > 0, "the new server's start is its own step"
    assert second.first_inference_status == 200 and second.failed is None
    assert "server start" in second.line() and "server start" not in first.line()


def test_a_first_inference_that_fails_is_reported_as_failed_with_its_status(
    served: tuple[Emulator, Any, list[Event]],
) -> None:
    """What `mme serve` prints for it: not a first inference done, but one failed, with Triton's status."""
    emulator, client, events = served
    with pytest.raises(client.exceptions.ModelError) as raised:
        _invoke(client, "stray_1.tar.gz")
    assert raised.value.response["OriginalStatusCode"] == 500
    cold = _cold_start(events, "stray_1.tar.gz")
    assert cold.failed == "first_inference" and cold.first_inference_status == 500
    assert cold.error is not None and NOT_READY in cold.error and "\n" not in cold.error
    assert f"first inference FAILED with status 500 after {cold.first_inference_s:.3f} s" in cold.line()
    assert cold.to_json()["failed"] == "first_inference"


def test_a_bls_model_is_pushed_through_its_cold_start_check(
    run_packager: RunPackager, bls_repo: Path
) -> None:
    pushed = run_packager("push", "bls", "--branch", "feature/bls", "--json", cwd=bls_repo)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    (report,) = json.loads(pushed.stdout)["models"]
    assert report["outcome"] == "uploaded" and report["replay"]["passed"] is True
    cold = report["checked"]["cold_start"]
    assert cold["model"] == "bls" and cold["first_inference_status"] == 200 and cold["failed"] is None


def test_a_failed_cold_start_check_says_so_and_what_failed(run_packager: RunPackager, bls_repo: Path) -> None:
    """`build --cold-start` (push runs the same check after its replay): the step that failed, Triton's
    status and a short message, in `checked` and in one line that names the check."""
    built = run_packager("build", "stray", "--cold-start", "--json", cwd=bls_repo)
    assert built.returncode == 1, built.stdout + built.stderr
    (record,) = json.loads(built.stdout)["artifacts"]
    assert record["error"].startswith(
        "cold-start check: stray_1.tar.gz failed at first inference (status 500): "
    )
    assert NOT_READY in record["error"] and "\n" not in record["error"] and len(record["error"]) < 500
    cold = record["checked"]["cold_start"]
    assert cold["failed"] == "first_inference" and cold["first_inference_status"] == 500
    assert NOT_READY in cold["error"] and cold["load_s"] > 0
    assert Path(record["checked"]["log"]).is_file()


def test_an_artifact_that_does_not_verify_fails_its_cold_start_at_verifying(
    built: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "bls_1.tar.gz"
    data = bytearray((built / "bls_1.tar.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    launcher = LocalLauncher.for_runtime(DEFAULT_RUNTIME)
    with pytest.raises(ColdStartFailed) as raised:
        measure_cold_start(
            archive,
            REQUEST,
            content_type="application/json",
            launcher=launcher,
            log_path=tmp_path / "cold.log",
            budget=30.0,
        )
    assert str(raised.value).startswith("cold-start check: bls_1.tar.gz failed at verify+extract: ")
    cold = raised.value.found["cold_start"]
    assert isinstance(cold, dict) and cold["failed"] == "verify_extract" and cold["download_s"] > 0
