"""`packager adopt`: models laid out as NVIDIA's examples and users' repositories ship them (written here,
not copied from upstream) become model directories that validate, replay, build and push."""

from __future__ import annotations

import json
import queue
import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from packager.artifacts import read_manifest
from packager.errors import UsageError
from packager.modeldir import (
    AdoptionError,
    ModelDir,
    TritonModel,
    adopt,
    load_cases,
    model_calls,
    read_config,
)
from packager.modeldir.adopt import wrapper_config
from packager.modeldir.scaffold import REQUIREMENTS
from packager.settings import DEFAULT_RUNTIME
from packager.triton import launched, launcher_for
from packager.validation import validate_model
from tests.conftest import RunPackager, git

# One python step, unbatched, two inputs and two outputs, as NVIDIA's python_backend add_sub example is
# laid out: config.pbtxt, 1/model.py and a client script side by side.
ADD_SUB_CONFIG = """name: "add_sub"
backend: "python"
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
instance_group [{ kind: KIND_CPU }]
"""
ADD_SUB = """import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            outputs = [pb_utils.Tensor("OUTPUT0", (a + b).astype(np.float32)),
                       pb_utils.Tensor("OUTPUT1", (a - b).astype(np.float32))]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""
# A model repository: two batched python steps and the ensemble that chains them, which has no version
# directory (git keeps no empty one), plus a client, a README and the requirements at the root.
STEP_CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "{input}" data_type: TYPE_FP32 dims: [ {dims} ] }} ]
output [ {{ name: "{output}" data_type: TYPE_FP32 dims: [ {out_dims} ] }} ]
"""
STEP = """import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "{input}").as_numpy()
            y = ({expression}).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("{output}", y)]))
        return responses
"""
PIPELINE_CONFIG = """name: "pipeline"
platform: "ensemble"
max_batch_size: 8
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 3 ] } ]
output [ { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] } ]
ensemble_scheduling {
  step [
    { model_name: "double" model_version: -1
      input_map { key: "RAW" value: "RAW" } output_map { key: "DOUBLED" value: "doubled" } },
    { model_name: "total" model_version: -1
      input_map { key: "DOUBLED" value: "doubled" } output_map { key: "SCORE" value: "SCORE" } }
  ]
}
"""


def add_sub(parent: Path, flat: bool = False) -> Path:
    """NVIDIA's add_sub layout (`flat`: model.py beside the config, as the example's sources sit)."""
    root = parent / "add_sub"
    (root / ("" if flat else "1")).mkdir(parents=True, exist_ok=True)
    (root / "config.pbtxt").write_text(ADD_SUB_CONFIG)
    (root / ("model.py" if flat else "1/model.py")).write_text(ADD_SUB)
    (root / "client.py").write_text("import tritonclient.http as httpclient\n")
    (root / "requirements.txt").write_text(REQUIREMENTS)
    return root


def pipeline_repository(parent: Path) -> Path:
    """A user's model repository: double -> total, chained by the `pipeline` ensemble."""
    root = parent / "model_repository"
    steps = {
        "double": ("RAW", "DOUBLED", 3, 3, "x * 2"),
        "total": ("DOUBLED", "SCORE", 3, 1, "x.sum(axis=1, keepdims=True)"),
    }
    for name, (source, target, dims, out_dims, expression) in steps.items():
        (root / name / "1").mkdir(parents=True)
        config = STEP_CONFIG.format(name=name, input=source, output=target, dims=dims, out_dims=out_dims)
        (root / name / "config.pbtxt").write_text(config)
        code = STEP.replace("{input}", source).replace("{output}", target).replace("{expression}", expression)
        (root / name / "1" / "model.py").write_text(code)
    (root / "pipeline").mkdir()
    (root / "pipeline" / "config.pbtxt").write_text(PIPELINE_CONFIG)
    (root / "client.py").write_text("print('a client')\n")
    (root / "README.md").write_text("# our pipeline\n")
    (root / "requirements.txt").write_text(REQUIREMENTS)
    return root


def test_a_single_model_is_nested_wired_and_templated(tmp_path: Path) -> None:
    adopted = adopt(add_sub(tmp_path / "upstream"), tmp_path / "models")
    root = tmp_path / "models" / "add_sub"
    assert adopted.path == root and adopted.top_model == "add_sub" and adopted.wired == ("add_sub",)
    assert adopted.left_out == (tmp_path / "upstream" / "add_sub" / "client.py",)
    files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    assert files == [
        "BUILD",
        "add_sub/1/model.py",
        "add_sub/config.pbtxt",
        "model_version.txt",
        "requirements.txt",
        "tests/cases/example.json",
        "tests/test_replay.py",
    ]
    config = read_config(root / "add_sub" / "config.pbtxt").config
    env = config.parameters["EXECUTION_ENV_PATH"].string_value
    assert env == "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz"
    case = json.loads((root / "tests" / "cases" / "example.json").read_text())
    assert case["inputs"][0] == {"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": [0, 0, 0, 0]}
    assert case["outputs"][1] == {"name": "OUTPUT1", "datatype": "FP32", "shape": [4], "data": None}
    assert 'python_sources(name="steps"' in (root / "BUILD").read_text()
    diagnostics = [str(diagnostic) for diagnostic in validate_model(ModelDir(root)).diagnostics]
    assert diagnostics == [
        f"{root}/requirements.txt: has no requirements.lock beside it: run `packager lock add_sub` and commit both files"
    ]


def test_model_py_beside_the_config_goes_into_version_1(tmp_path: Path) -> None:
    adopted = adopt(add_sub(tmp_path / "upstream", flat=True), tmp_path / "models", name="adder")
    assert (adopted.path / "add_sub" / "1" / "model.py").read_text() == ADD_SUB
    assert adopted.path.name == "adder" and [path.name for path in adopted.left_out] == ["client.py"]


def test_a_repository_keeps_its_models_and_leaves_the_rest(tmp_path: Path) -> None:
    source = pipeline_repository(tmp_path / "upstream")
    adopted = adopt(source, tmp_path / "models")
    root = adopted.path
    assert root.name == "pipeline" and adopted.triton_models == ("double", "pipeline", "total")
    assert sorted(path.name for path in adopted.left_out) == ["README.md", "client.py"]
    assert (
        root / "pipeline" / "1" / ".gitkeep"
    ).is_file(), "an ensemble gets the version directory Triton needs"
    assert adopted.wired == ("double", "total")
    case = json.loads((root / "tests" / "cases" / "example.json").read_text())
    assert case["inputs"] == [{"name": "RAW", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]}]
    assert case["outputs"] == [{"name": "SCORE", "datatype": "FP32", "shape": [1, 1], "data": None}]


def test_what_cannot_be_adopted_is_refused_and_nothing_is_left_half_made(tmp_path: Path) -> None:
    upstream, models = tmp_path / "upstream", tmp_path / "models"
    adopt(add_sub(upstream), models)
    with pytest.raises(UsageError, match=r"models/add_sub already exists; choose another name with --name"):
        adopt(upstream / "add_sub", models)
    with pytest.raises(UsageError, match=r"model name 'add sub' .*; choose another with --name"):
        adopt(upstream / "add_sub", models, name="add sub")
    (tmp_path / "notes").mkdir()
    with pytest.raises(UsageError, match=r"notes: holds no config.pbtxt, nor subdirectories with one"):
        adopt(tmp_path / "notes", models)
    (upstream / "add_sub" / "config.pbtxt").write_text('name: "add_sub"\nbackend: python"\n')
    with pytest.raises(AdoptionError, match=r"add_sub/config.pbtxt:2:\d+: .*; fix it before adopting"):
        adopt(upstream / "add_sub", models, name="other")
    assert sorted(path.name for path in models.iterdir()) == ["add_sub"], "no scratch or partial directory"


def test_adopted_models_validate_replay_build_and_push(
    tmp_path: Path, run_packager: RunPackager, s3: dict[str, str]
) -> None:
    """The issue's acceptance path, through the CLI and a real Triton: adopt, write the expected outputs,
    then validate, replay, build and push to a feature branch's staging store."""
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "pants.toml").write_text("")
    (repo / ".gitignore").write_text("dist/\npython_env.tar.gz\n")
    git(repo, "init", "-q", "-b", "main")
    upstream = tmp_path / "upstream"
    for source in (add_sub(upstream), pipeline_repository(upstream)):
        adopted = run_packager("adopt", str(source), cwd=repo)
        assert adopted.returncode == 0, adopted.stderr
        assert "validate: ok. Next: set the inputs and write the expected outputs" in adopted.stdout
    replayed = run_packager("replay", "add_sub", cwd=repo)
    assert replayed.returncode == 1
    assert (
        'OUTPUT0: the case does not give the expected values yet (data is null); got "shape": [4]'
        in replayed.stdout
    )

    _write_case(repo / "models" / "add_sub", [[1, 2, 3, 4], [4, 3, 2, 1]], [[5, 5, 5, 5], [-3, -1, 1, 3]])
    _write_case(repo / "models" / "pipeline", [[1, 2, 3]], [[12]])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "adopt add_sub and pipeline")
    for command in (("validate",), ("replay",), ("build",), ("push", "--branch", "feature/x")):
        done = run_packager(*command, "add_sub", "pipeline", cwd=repo, env=s3)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    assert "2 models checked: 2 ok" in run_packager("validate", cwd=repo).stderr


def _write_case(model: Path, inputs: list[list[int]], outputs: list[list[int]]) -> None:
    """Fill the template as a person would: the inputs, and the outputs the model must return."""
    path = model / "tests" / "cases" / "example.json"
    case = json.loads(path.read_text())
    batched = case["inputs"][0]["shape"][0] == 1 and len(case["inputs"]) == 1
    for tensor, values in zip(case["inputs"], inputs, strict=True):
        tensor["data"] = [values] if batched else values
    for tensor, values in zip(case["outputs"], outputs, strict=True):
        tensor["data"] = [values] if batched else values
    path.write_text(json.dumps(case, indent=2))


# NVIDIA's BLS examples: a python model that calls another by name (`pb_utils.InferenceRequest`), beside
# the model it calls, and no ensemble. `bls` has add_sub's inputs and outputs and answers with its result.
BLS_CONFIG = ADD_SUB_CONFIG.replace('name: "add_sub"', 'name: "bls"')
BLS = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            in_0 = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            in_1 = pb_utils.get_input_tensor_by_name(request, "INPUT1")
            infer_request = pb_utils.InferenceRequest(
                model_name="add_sub", requested_output_names=["OUTPUT0", "OUTPUT1"], inputs=[in_0, in_1]
            )
            infer_response = infer_request.exec()
            if infer_response.has_error():
                raise pb_utils.TritonModelException(infer_response.error().message())
            responses.append(pb_utils.InferenceResponse(output_tensors=infer_response.output_tensors()))
        return responses
"""
# The async example names the models it calls in a loop; the sync one reads the name from an input.
ASYNC_CALLS = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        for request in requests:
            for model_name in ["pytorch", "add_sub"]:
                pb_utils.InferenceRequest(model_name=model_name, requested_output_names=["OUTPUT0"], inputs=[])
"""
SYNC_CALLS = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            model_name_string = pb_utils.get_input_tensor_by_name(request, "MODEL_NAME").as_numpy()[0]
            pb_utils.InferenceRequest(model_name=model_name_string, requested_output_names=[], inputs=[])
"""
# A decoupled (streaming) model: one response per value of IN, then the final flag alone.
REPEAT_CONFIG = """name: "repeat"
backend: "python"
model_transaction_policy { decoupled: true }
input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""
REPEAT = """import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            for value in pb_utils.get_input_tensor_by_name(request, "IN").as_numpy():
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([value], np.int32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""
# resnet50 as the ONNX examples ship it: one image of 3x224x224 floats, batched.
RESNET_CONFIG = """name: "resnet50"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "data" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
output [ { name: "resnetv17_dense0_fwd" data_type: TYPE_FP32 dims: [ 1000 ] } ]
"""


def model_repository(parent: Path, models: dict[str, tuple[str, str | None]]) -> Path:
    """`parent/model_repository` holding each Triton model as NVIDIA's examples lay them out: config.pbtxt
    and 1/ (with model.py for python models), and a client beside them."""
    root = parent / "model_repository"
    for name, (config, code) in models.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config)
        if code is not None:
            (root / name / "1" / "model.py").write_text(code)
    (root / "client.py").write_text("import tritonclient.http as httpclient\n")
    return root


def bls_repository(parent: Path) -> Path:
    return model_repository(parent, {"add_sub": (ADD_SUB_CONFIG, ADD_SUB), "bls": (BLS_CONFIG, BLS)})


def test_calls_by_name_are_read_from_the_source_without_running_it(tmp_path: Path) -> None:
    root = model_repository(
        tmp_path,
        {
            "bls": (BLS_CONFIG, BLS),
            "bls_async": (BLS_CONFIG.replace('"bls"', '"bls_async"'), ASYNC_CALLS),
            "bls_sync": (BLS_CONFIG.replace('"bls"', '"bls_sync"'), SYNC_CALLS),
            "add_sub": (ADD_SUB_CONFIG, ADD_SUB),
        },
    )
    models = {
        path.parent.name: TritonModel(path.parent, read_config(path)) for path in root.glob("*/config.pbtxt")
    }
    assert model_calls(models["bls"]).names == {"add_sub"}
    assert model_calls(models["bls_async"]).names == {"add_sub", "pytorch"}
    sync = model_calls(models["bls_sync"])
    assert sync.names == set() and sync.unresolved == 1 and sync.makes_calls
    assert not model_calls(models["add_sub"]).makes_calls


def test_a_bls_repository_is_served_through_an_ensemble_around_the_model_nothing_calls(
    tmp_path: Path,
) -> None:
    """The ensemble SageMaker MME serves, with a loader step in front of bls that loads add_sub (which MME,
    loading only the ensemble and its steps, never would); without the loader validate refuses the call."""
    adopted = adopt(bls_repository(tmp_path / "upstream"), tmp_path / "models")
    root = tmp_path / "models" / "bls"
    assert adopted.path == root, "named after the model requests go to, not the first in sorted order"
    assert adopted.triton_models == ("add_sub", "bls", "bls_ensemble", "bls_loader")
    assert (adopted.top_model, adopted.wrapped) == ("bls_ensemble", "bls")
    ensemble = read_config(root / "bls_ensemble" / "config.pbtxt").config
    assert ensemble.platform == "ensemble" and [
        step.model_name for step in ensemble.ensemble_scheduling.step
    ] == ["bls_loader", "bls"]
    assert (root / "bls_ensemble" / "1" / ".gitkeep").is_file()
    assert "load_model(model_name=model_name)" in (root / "bls_loader" / "1" / "model.py").read_text()
    report = validate_model(ModelDir(root))
    assert report.ok, report.diagnostics
    models = {name: report.triton_models[name] for name in ("add_sub", "bls")}
    shutil.rmtree(root / "bls_loader")
    (root / "bls_ensemble" / "config.pbtxt").write_text(
        wrapper_config("bls_ensemble", "bls", model=models["bls"])
    )
    (unloaded,) = validate_model(ModelDir(root)).diagnostics
    assert unloaded.location().endswith("bls/1/model.py:11:28") and unloaded.message.startswith(
        "bls calls 'add_sub' by name, which a multi-model endpoint never loads"
    ), unloaded

    case = json.loads((root / "tests" / "cases" / "example.json").read_text())
    assert "model" not in case and [tensor["name"] for tensor in case["inputs"]] == ["INPUT0", "INPUT1"]
    (loaded,) = load_cases(root, report.triton_models, "bls_ensemble")
    assert loaded.model == "bls_ensemble"
    shutil.rmtree(root / "bls_ensemble")
    (refused,) = validate_model(ModelDir(root)).diagnostics
    assert refused.message.endswith(
        ": add an ensemble that wires the steps, or a one-step ensemble around bls, which no other model calls "
        "(`packager adopt` writes one)"
    )


def test_the_ensemble_is_never_named_like_one_of_its_steps(tmp_path: Path) -> None:
    upstream = bls_repository(tmp_path / "upstream")
    named = adopt(upstream, tmp_path / "models", name="adder")
    assert (named.path.name, named.top_model) == ("adder", "adder")
    clashing = adopt(upstream, tmp_path / "models", name="add_sub")
    assert (clashing.path.name, clashing.top_model) == ("add_sub", "add_sub_ensemble")
    for adopted in (named, clashing):
        assert validate_model(ModelDir(adopted.path)).ok


def test_two_models_that_nothing_calls_need_top(tmp_path: Path) -> None:
    upstream = model_repository(
        tmp_path / "upstream", {"add_sub": (ADD_SUB_CONFIG, ADD_SUB), "repeat": (REPEAT_CONFIG, REPEAT)}
    )
    with pytest.raises(UsageError) as refused:
        adopt(upstream, tmp_path / "models")
    assert str(refused.value) == (
        f"{upstream}: holds several Triton models that no other calls (add_sub, repeat); "
        "say which one requests go to with --top MODEL"
    )
    with pytest.raises(
        UsageError, match=r"--top nope: not a Triton model of .*model_repository \(add_sub, repeat\)"
    ):
        adopt(upstream, tmp_path / "models", top="nope")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
    adopted = adopt(upstream, tmp_path / "models", top="repeat")
    assert (adopted.path.name, adopted.top_model, adopted.wrapped) == ("repeat", "repeat_ensemble", "repeat")
    ensemble = read_config(adopted.path / "repeat_ensemble" / "config.pbtxt").config
    assert ensemble.model_transaction_policy.decoupled, "a decoupled model's ensemble streams too"
    assert validate_model(ModelDir(adopted.path)).ok


def test_a_one_step_ensemble_streams_a_decoupled_model_in_a_real_triton(tmp_path: Path) -> None:
    upstream = model_repository(
        tmp_path / "upstream", {"add_sub": (ADD_SUB_CONFIG, ADD_SUB), "repeat": (REPEAT_CONFIG, REPEAT)}
    )
    adopted = adopt(upstream, tmp_path / "models", top="repeat")
    report = validate_model(ModelDir(adopted.path))
    launcher = launcher_for(DEFAULT_RUNTIME)
    with launched(report, None, launcher=launcher, log_path=tmp_path / "triton.log") as served:
        assert served.top_model == "repeat_ensemble"
        answers: queue.Queue[tuple[object, object]] = queue.Queue()
        client = grpcclient.InferenceServerClient(served.server.endpoints.grpc)
        try:
            client.start_stream(callback=lambda result, error: answers.put((result, error)))
            values = grpcclient.InferInput("IN", [3], "INT32")
            values.set_data_from_numpy(np.array([7, 8, 9], dtype=np.int32))
            client.async_stream_infer(served.top_model, [values], enable_empty_final_response=True)
            received = []
            while True:
                result, error = answers.get(timeout=30)
                assert error is None, error
                assert isinstance(result, grpcclient.InferResult)
                final = result.get_response().parameters["triton_final_response"].bool_param
                out = result.as_numpy("OUT")
                received.append((None if out is None else out.tolist(), final))
                if final:
                    break
            client.stop_stream()
        finally:
            client.close()
    assert received == [([7], False), ([8], False), ([9], False), (None, True)]


def test_a_big_input_gets_a_small_template_that_replay_sends_whole(tmp_path: Path) -> None:
    upstream = model_repository(tmp_path / "upstream", {"resnet50": (RESNET_CONFIG, None)})
    adopted = adopt(upstream / "resnet50", tmp_path / "models")
    assert adopted.case_template is not None
    text = adopted.case_template.read_text()
    assert len(text) < 1000, f"{len(text)} characters"
    case = json.loads(text)
    assert case["inputs"] == [{"name": "data", "datatype": "FP32", "shape": [1, 3, 224, 224], "fill": 0}]
    report = validate_model(ModelDir(adopted.path))
    assert report.ok, report.diagnostics
    (loaded,) = load_cases(adopted.path, report.triton_models, "resnet50")
    (image,) = loaded.inputs
    assert image.shape == [1, 3, 224, 224] and image.data.dtype == np.float32 and not image.data.any()


def test_a_bls_repository_adopts_validates_replays_and_builds(
    tmp_path: Path, run_packager: RunPackager
) -> None:
    """Through the CLI and a real Triton: the case calls the ensemble, the ensemble calls bls, bls calls
    add_sub by name; the artifact's manifest names the ensemble as the model SageMaker MME serves."""
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "pants.toml").write_text("")
    (repo / ".gitignore").write_text("dist/\n")
    git(repo, "init", "-q", "-b", "main")
    adopted = run_packager("adopt", str(bls_repository(tmp_path / "upstream")), cwd=repo)
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert (
        "(top: bls_ensemble, an ensemble around bls, after bls_loader, which loads what it calls by name, "
        "written by adopt: SageMaker MME serves a repository's ensemble, and loads only it and its steps)"
        in adopted.stdout
    )
    _write_case(repo / "models" / "bls", [[1, 2, 3, 4], [4, 3, 2, 1]], [[5, 5, 5, 5], [-3, -1, 1, 3]])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "adopt bls")
    for command in (("validate",), ("replay",), ("build",)):
        done = run_packager(*command, "bls", cwd=repo)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    manifest, _, _ = read_manifest(repo / "dist" / "bls_1.tar.gz")
    assert manifest["top_model"] == "bls_ensemble"
