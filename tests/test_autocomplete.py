"""Models whose config Triton completes as it loads them (model.py's `auto_complete_config`, as NVIDIA's
python_backend ships its auto_complete examples: a config.pbtxt with only `backend`, or none at all), and
models whose instance groups ask for a GPU, which the servers here do not have. The models are written
here, shaped as upstream's, not copied."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelInstanceGroup

from packager.artifacts import build_artifact
from packager.config import load_config
from packager.endpoint import emulating
from packager.endpoint.errors import TargetInvalid
from packager.environments import env_builder_for
from packager.modeldir import Completion, ModelDir, TritonModel, read_config
from packager.modeldir.model_config import ModelConfig
from packager.modeldir.scaffold import REQUIREMENTS
from packager.preflight import prepare
from packager.release.stores.file import FileStore
from packager.settings import DEFAULT_RUNTIME, ConfigError
from packager.triton import Launcher, Served, TritonCompleter, Watcher, launcher_for
from packager.triton.fake import FakeLauncher
from packager.validation import validate_model
from tests.conftest import DOUBLER, DOUBLER_CONFIG, RunPackager, git, serve_banner, start_packager
from tests.test_adopt import ADD_SUB

# What python_backend's auto_complete examples do: declare the tensors unless the config already does,
# set max_batch_size, and ask for dynamic batching when batching ({batch}: 0, nobatch, or 4); then add_sub.
AUTO_COMPLETE_CONFIG = """    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        inputs = [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]},
                  {"name": "INPUT1", "data_type": "TYPE_FP32", "dims": [4]}]
        outputs = [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]},
                   {"name": "OUTPUT1", "data_type": "TYPE_FP32", "dims": [4]}]
        config = auto_complete_model_config.as_dict()
        declared = {tensor["name"] for tensor in config["input"] + config["output"]}
        for tensor in inputs:
            if tensor["name"] not in declared:
                auto_complete_model_config.add_input(tensor)
        for tensor in outputs:
            if tensor["name"] not in declared:
                auto_complete_model_config.add_output(tensor)
        auto_complete_model_config.set_max_batch_size({batch})
        if {batch} > 0:
            auto_complete_model_config.set_dynamic_batching()
        return auto_complete_model_config

"""
AUTO_COMPLETE = ADD_SUB.replace(
    "class TritonPythonModel:\n", "class TritonPythonModel:\n" + AUTO_COMPLETE_CONFIG
)
BACKEND_ONLY = 'backend: "python"\n'
# A model for a GPU, as most upstream configs are written: the doubler with one KIND_GPU instance group.
GPU_CONFIG = DOUBLER_CONFIG + "instance_group [ { count: 1, kind: KIND_GPU } ]\n"


def auto_complete(batch: int) -> str:
    """The model.py, with a comment of its own: a cold cache for each test (the cache keys its content)."""
    return AUTO_COMPLETE.replace("{batch}", str(batch)) + f"# {uuid.uuid4()}\n"


def tensor(name: str, shape: list[int], data: object) -> dict[str, object]:
    return {"name": name, "datatype": "FP32", "shape": shape, "data": data}


def add_sub_case(batched: bool) -> dict[str, object]:
    """INPUT0 + INPUT1 and INPUT0 - INPUT1, with a batch of one in front when the model batches."""
    a, b, total, difference = [1, 2, 3, 4], [1, 1, 1, 1], [2, 3, 4, 5], [0, 1, 2, 3]

    def shaped(values: list[int]) -> tuple[list[int], object]:
        return ([1, 4], [values]) if batched else ([4], values)

    return {
        "inputs": [tensor("INPUT0", *shaped(a)), tensor("INPUT1", *shaped(b))],
        "outputs": [tensor("OUTPUT0", *shaped(total)), tensor("OUTPUT1", *shaped(difference))],
    }


def model_dir(parent: Path, name: str, triton: str, config: str, code: str, cases: dict[str, object]) -> Path:
    """A model directory `parent/name` holding one python Triton model and its cases."""
    root = parent / name
    (root / triton / "1").mkdir(parents=True)
    (root / "model_version.txt").write_text("1\n")
    (root / triton / "config.pbtxt").write_text(config)
    (root / triton / "1" / "model.py").write_text(code)
    (root / "tests" / "cases").mkdir(parents=True)
    for case, document in cases.items():
        (root / "tests" / "cases" / f"{case}.json").write_text(json.dumps(document, indent=1))
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "models").mkdir(parents=True)
    (root / "pants.toml").write_text("")
    (root / ".gitignore").write_text("dist/\n")
    return root


def test_validate_judges_cases_against_the_config_triton_completes(
    repo: Path, run_packager: RunPackager
) -> None:
    """Batching set in model.py: the right batched case passes, a case without the batch dimension is refused
    at its shape, as Triton's completed config says; a second validate reads the completion from the cache."""
    wrong = add_sub_case(batched=False)
    model_dir(
        repo / "models",
        "adder",
        "add_sub",
        BACKEND_ONLY,
        auto_complete(4),
        {"right": add_sub_case(True), "wrong": wrong},
    )
    first = run_packager("validate", cwd=repo)
    assert first.returncode == 1, first.stderr
    case = Path("models/adder/tests/cases/wrong.json")
    assert first.stdout.splitlines() == [
        f"{case}:6:13: input 'INPUT0' shape [4] does not match [batch, 4]: add_sub batches (max_batch_size 4) "
        "(as Triton completes its config)"
    ]
    assert (
        "models/adder/add_sub/config.pbtxt: checked against the config Triton 2.51.0 completes (model.py "
        "defines auto_complete_config; asked now, " in first.stderr
    )
    assert "max_batch_size 4, inputs INPUT0, INPUT1, outputs OUTPUT0, OUTPUT1" in first.stderr
    (repo / "models/adder/tests/cases/wrong.json").unlink()
    second = run_packager("validate", "--json", cwd=repo)
    assert second.returncode == 0, second.stdout
    (report,) = json.loads(second.stdout)["models"]
    completed = report["completed"]["add_sub"]
    assert completed["cached"] is True and completed["note"] == "Triton 2.51.0"
    assert (completed["max_batch_size"], completed["inputs"]) == (4, ["INPUT0", "INPUT1"])


class CountingLaunches:
    """The launcher factory a completer calls on a cache miss, counting its calls (`refuse`: a call fails
    the test, since the cache must answer)."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls = 0
        self.refuse = refuse

    def __call__(self) -> Launcher:
        assert not self.refuse, "a server was started although the completion was cached"
        self.calls += 1
        return launcher_for(DEFAULT_RUNTIME)


def test_a_cached_completion_starts_no_server(tmp_path: Path) -> None:
    """No batching set in model.py: the completion is asked once, then read back from the cache by content;
    a change to model.py asks again."""
    root = model_dir(
        tmp_path, "nobatch", "auto", BACKEND_ONLY, auto_complete(0), {"right": add_sub_case(False)}
    )
    launches = CountingLaunches()
    cold = validate_model(ModelDir(root), TritonCompleter(DEFAULT_RUNTIME, launches, lambda model: None))
    assert cold.ok and launches.calls == 1, cold.diagnostics
    assert (
        not cold.completions["auto"].cached and cold.triton_models["auto"].loaded_config.max_batch_size == 0
    )
    refusing = TritonCompleter(DEFAULT_RUNTIME, CountingLaunches(refuse=True), lambda model: None)
    warm = validate_model(ModelDir(root), refusing)
    assert warm.ok and warm.completions["auto"].cached
    assert warm.triton_models["auto"].completed == cold.triton_models["auto"].completed
    print(
        f"completion: cold {cold.completions['auto'].seconds:.3f} s, cached {warm.completions['auto'].seconds:.4f} s"
    )
    (root / "auto" / "1" / "model.py").write_text(auto_complete(4))
    with pytest.raises(AssertionError, match="a server was started"):
        validate_model(ModelDir(root), refusing)


def test_without_a_triton_the_cases_of_a_completed_model_are_not_misjudged(tmp_path: Path) -> None:
    """Offline (no completer: what `serve --reload` re-validates with), a right case is not refused for
    inputs the file does not declare; the report says the config was not completed."""
    root = model_dir(
        tmp_path, "nobatch", "auto", BACKEND_ONLY, auto_complete(0), {"right": add_sub_case(False)}
    )
    report = validate_model(ModelDir(root))
    assert report.ok, report.diagnostics
    (note,) = report.notes()
    assert note.endswith(
        "auto/config.pbtxt: not completed (model.py defines auto_complete_config): validation was not given "
        "a Triton; the cases and ensemble steps that call auto were not checked against its inputs and outputs"
    )


ENSEMBLE = """platform: "ensemble"
input [ { name: "A" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "SUM" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [ { model_name: "auto" model_version: -1
  input_map [ { key: "INPUT0" value: "A" }, { key: "%s" value: "B" } ]
  output_map { key: "OUTPUT0" value: "SUM" } } ] }
"""


COMPLETED = """max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def answering(model: ModelDir, triton_models: Mapping[str, TritonModel]) -> dict[str, Completion]:
    """A completer that answers as Triton does for the nobatch model (no server: the rules are under test)."""
    return {name: Completion(text_format.Parse(COMPLETED, ModelConfig()), "a test") for name in triton_models}


@pytest.mark.parametrize("key", ["INPUT1", "INPUT9"])
def test_an_ensemble_step_is_wired_against_its_completed_config(tmp_path: Path, key: str) -> None:
    """A step whose inputs only Triton's completion declares: uncompleted, it is not judged; wired right, it
    passes; wired to an input the completed config lacks, it is refused at the map key."""
    root = model_dir(tmp_path, "pipeline", "auto", BACKEND_ONLY, auto_complete(0), {})
    (root / "pipeline" / "1").mkdir(parents=True)
    (root / "pipeline" / "config.pbtxt").write_text(ENSEMBLE % key)
    assert validate_model(ModelDir(root)).ok
    report = validate_model(ModelDir(root), answering)
    problems = [f"{d.line}:{d.column}: {d.message}" for d in report.diagnostics]
    refused = [
        "4:30: input 'INPUT1' of step model 'auto' is not mapped to any ensemble tensor",
        "5:52: 'INPUT9' is not an input of step model 'auto' (inputs: INPUT0, INPUT1)",
    ]
    assert problems == ([] if key == "INPUT1" else refused)


def test_adopt_takes_python_models_without_a_config_and_templates_the_completed_one(
    tmp_path: Path, repo: Path, run_packager: RunPackager
) -> None:
    """NVIDIA's auto_complete examples as they ship: nobatch's model.py alone (no config.pbtxt), batch's
    with a config.pbtxt holding only its backend. Each is adopted with the config Triton needs, its case
    template made from the config Triton completes, and it replays once its outputs are written."""
    upstream = tmp_path / "upstream"
    (upstream / "nobatch_auto").mkdir(parents=True)
    (upstream / "nobatch_auto" / "model.py").write_text(auto_complete(0))
    (upstream / "batch_auto" / "1").mkdir(parents=True)
    (upstream / "batch_auto" / "config.pbtxt").write_text(BACKEND_ONLY)
    (upstream / "batch_auto" / "1" / "model.py").write_text(auto_complete(4))
    shapes = {}
    for name in ("nobatch_auto", "batch_auto"):
        adopted = run_packager("adopt", str(upstream / name), cwd=repo)
        assert adopted.returncode == 0, adopted.stdout + adopted.stderr
        assert "validate: ok. Next: set the inputs and write the expected outputs" in adopted.stdout
        assert (
            f"models/{name}/{name}/config.pbtxt: checked against the config Triton 2.51.0 completes"
            in adopted.stderr
        )
        assert (repo / "models" / name / name / "config.pbtxt").read_text() == BACKEND_ONLY
        template = json.loads((repo / "models" / name / "tests" / "cases" / "example.json").read_text())
        shapes[name] = [
            (tensor["name"], tensor["shape"]) for tensor in template["inputs"] + template["outputs"]
        ]
    assert shapes["nobatch_auto"] == [(name, [4]) for name in ("INPUT0", "INPUT1", "OUTPUT0", "OUTPUT1")]
    assert shapes["batch_auto"] == [(name, [1, 4]) for name in ("INPUT0", "INPUT1", "OUTPUT0", "OUTPUT1")]
    case = repo / "models" / "nobatch_auto" / "tests" / "cases" / "example.json"
    case.write_text(json.dumps(add_sub_case(batched=False)))
    replayed = run_packager("replay", "nobatch_auto", cwd=repo)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert serve_example(repo, "batch_auto")["outputs"][0]["shape"] == [1, 4]


def serve_example(repo: Path, model: str) -> dict[str, Any]:
    """What the model answers to the example `curl` that `packager serve` prints for it (its request sent
    as that curl sends it), while it serves."""
    process = start_packager("serve", model, cwd=repo)
    try:
        curl = shlex.split(next(line for line in serve_banner(process) if line.strip().startswith("curl ")))
        request = urllib.request.Request(
            curl[2], data=curl[curl.index("-d") + 1].encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as answer:
            document: dict[str, Any] = json.loads(answer.read())
            return document
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def gpu_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A monorepo holding `gpu`, the doubler with a KIND_GPU instance group, and its case, committed."""
    root = tmp_path_factory.mktemp("gpu") / "repo"
    (root / "models").mkdir(parents=True)
    (root / "pants.toml").write_text("")
    (root / ".gitignore").write_text("dist/\n")
    case = {"inputs": [tensor("X", [1, 2], [[1.5, -2.0]])], "outputs": [tensor("Y", [1, 2], [[3.0, -4.0]])]}
    model_dir(root / "models", "gpu", "doubler", GPU_CONFIG, DOUBLER, {"double": case})
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "a model for a GPU")
    return root


def test_validate_warns_at_a_gpu_instance_group(gpu_repo: Path, run_packager: RunPackager) -> None:
    validated = run_packager("validate", "gpu", cwd=gpu_repo)
    assert validated.returncode == 0 and "1 model checked: 1 ok (1 warning)" in validated.stderr
    (line,) = validated.stdout.splitlines()
    assert line.startswith(
        "models/gpu/doubler/config.pbtxt:5:36: warning: this instance group asks for a GPU, "
    )
    assert "replay refuses it unless given --cpu (or gpu_as_cpu = true in the runtime's packager.toml" in line


REFUSED = (
    "asks for a GPU, and the local launcher's Triton has none (it would refuse the model: no GPUs are "
    "available): run with --cpu, or set gpu_as_cpu = true in the runtime's packager.toml table"
)


def test_replay_refuses_a_gpu_model_before_triton_starts_or_runs_its_staged_copy_on_cpu(
    gpu_repo: Path, run_packager: RunPackager
) -> None:
    """Refused, naming the config line and the override, with no server started (no server log); with
    --cpu it replays, and neither the model directory nor the built artifact lose their KIND_GPU."""
    refused = run_packager("replay", "gpu", cwd=gpu_repo)
    assert refused.returncode == 1
    assert f"gpu: models/gpu/doubler/config.pbtxt:5:36: {REFUSED}" in refused.stdout
    assert not (gpu_repo / "dist" / "logs" / "gpu-replay.log").exists(), "no Triton was started"
    replayed = run_packager("replay", "--cpu", "gpu", cwd=gpu_repo)
    assert replayed.returncode == 0, replayed.stdout
    assert (gpu_repo / "models" / "gpu" / "doubler" / "config.pbtxt").read_text() == GPU_CONFIG
    built = run_packager("build", "gpu", cwd=gpu_repo)
    assert built.returncode == 0, built.stderr
    archive = gpu_repo / "dist" / "gpu_1.tar.gz"
    with tarfile.open(archive) as tar:
        member = tar.extractfile("doubler/config.pbtxt")
        assert member is not None and member.read() == GPU_CONFIG.encode(), "what ships keeps KIND_GPU"
    refused = run_packager("replay", "--artifact", str(archive), cwd=gpu_repo)
    assert f"gpu: the artifact's doubler/config.pbtxt:5:36: {REFUSED}" in refused.stdout
    assert run_packager("replay", "--cpu", "--artifact", str(archive), cwd=gpu_repo).returncode == 0


def test_the_runtime_says_gpu_as_cpu_for_every_command_and_the_endpoint(
    gpu_repo: Path, tmp_path: Path
) -> None:
    """packager.toml's gpu_as_cpu (what push, ci and the models' own tests read) reaches the launchers, and
    the emulated endpoint (mme serve, push's cold-start check) refuses a GPU target, or runs it on CPU."""
    toml = tmp_path / "packager.toml"
    local = f'triton_version = "2.51.0"\npython = "3.11"\nserver_package = "{DEFAULT_RUNTIME.server_package}"'
    toml.write_text(f'[runtime.local]\n{local}\ngpu_as_cpu = "yes"\n')
    with pytest.raises(
        ConfigError, match=r"packager.toml:5:14: \[runtime.local\] gpu_as_cpu must be true or false"
    ):
        load_config(tmp_path)
    toml.write_text(toml.read_text().replace('"yes"', "true"))
    runtime = load_config(tmp_path).runtime("local")
    assert runtime.gpu_as_cpu and launcher_for(runtime).gpu_as_cpu
    model = ModelDir(gpu_repo / "models" / "gpu")
    report, environment = prepare(model, DEFAULT_RUNTIME, env_builder_for(DEFAULT_RUNTIME))
    artifact = build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "dist")
    body = json.dumps({"inputs": [tensor("X", [1, 2], [[1.5, -2.0]])]}).encode()
    store = FileStore(f"file://{artifact.path.parent}", artifact.path.parent)
    for launcher in (launcher_for(DEFAULT_RUNTIME), launcher_for(runtime)):
        with emulating(store, launcher, log_path=tmp_path / "mme.log") as emulator:
            if not launcher.gpu_as_cpu:
                refused = (
                    r"gpu_1.tar.gz cannot be served: the artifact's doubler/config.pbtxt:5:36: asks for a GPU"
                )
                with pytest.raises(TargetInvalid, match=refused):
                    emulator.invoke(artifact.path.name, body, "application/json")
                continue
            answer = emulator.invoke(artifact.path.name, body, "application/json")
            assert json.loads(answer.body)["outputs"][0]["data"] == [3.0, -4.0]


def test_a_model_triton_refuses_to_complete_is_a_located_problem_and_is_not_cached(tmp_path: Path) -> None:
    """auto_complete_config raising: Triton's refusal, at the config it could not complete; asked again
    next time (only answers are cached). A backend the runtime's Triton lacks is said, not misjudged."""
    broken = auto_complete(0).replace(
        "        inputs = [", "        raise ValueError('no tensors today')\n        inputs = [", 1
    )
    root = model_dir(tmp_path, "broken", "auto", BACKEND_ONLY, broken, {"right": add_sub_case(False)})
    for _ in range(2):
        launches = CountingLaunches()
        report = validate_model(
            ModelDir(root), TritonCompleter(DEFAULT_RUNTIME, launches, lambda model: None)
        )
        (problem,) = report.diagnostics
        assert launches.calls == 1 and (problem.path, problem.line) == (root / "auto" / "config.pbtxt", None)
        assert problem.message.startswith(
            "Triton refused to load it to complete its config (model.py defines auto_complete_config): "
        )
        assert problem.message.endswith(
            "version 1 is at UNAVAILABLE state: Internal: ValueError: no tensors today"
        )
    onnx = model_dir(tmp_path, "onnx", "scorer", 'platform: "onnxruntime_onnx"\n', "", {})
    (onnx / "scorer" / "1" / "model.py").rename(onnx / "scorer" / "1" / "model.onnx")
    report = validate_model(
        ModelDir(onnx), TritonCompleter(DEFAULT_RUNTIME, CountingLaunches(), lambda model: None)
    )
    assert report.ok and report.notes() == [
        f"{onnx}/scorer/config.pbtxt: not completed (its config declares no inputs and outputs: the onnxruntime "
        "backend completes them): the local launcher's Triton has no onnxruntime backend; the cases and "
        "ensemble steps that call scorer were not checked against its inputs and outputs"
    ]


ENV_PARAMETER = 'parameters: { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" } }\n'


def test_a_step_with_an_environment_is_completed_in_it_once_built(tmp_path: Path, scaffold_lock: str) -> None:
    """Before its environment is built (validate builds none), the step is completed on the server's own
    Python, and the report says so; once built, in it (a completion of its own in the cache)."""
    root = model_dir(tmp_path, "env", "auto", BACKEND_ONLY + ENV_PARAMETER, auto_complete(4), {})
    (root / "requirements.txt").write_text(REQUIREMENTS)
    (root / "requirements.lock").write_text(scaffold_lock)
    builder = env_builder_for(DEFAULT_RUNTIME)
    offline = TritonCompleter.for_runtime(DEFAULT_RUNTIME, builder, build_envs=False)
    building = TritonCompleter.for_runtime(DEFAULT_RUNTIME, builder, build_envs=True)
    bare = TritonCompleter(DEFAULT_RUNTIME, CountingLaunches(), lambda model: None)
    without = validate_model(ModelDir(root), bare)
    assert without.ok and without.completions["auto"].note == (
        "Triton 2.51.0 on its own Python (the environment is not built yet: `packager env env`)"
    )
    assert without.triton_models["auto"].loaded_config.max_batch_size == 4
    within = validate_model(ModelDir(root), building)
    assert within.ok and within.completions["auto"].note == "Triton 2.51.0"
    assert validate_model(ModelDir(root), offline).completions["auto"].cached, "validate finds it built"


def test_serve_cpu_reload_restages_a_gpu_model_on_cpu(gpu_repo: Path, tmp_path: Path) -> None:
    """`serve --cpu --reload`: a saved step of a KIND_GPU model is restaged with its config on CPU again,
    its model directory's copy untouched (the server is a fake: the restaging is under test)."""
    model = ModelDir(shutil.copytree(gpu_repo / "models" / "gpu", tmp_path / "models" / "gpu"))
    (tmp_path / "pants.toml").write_text("")
    report = validate_model(model)
    repository = tmp_path / "served"
    (repository / "doubler").mkdir(parents=True)
    with FakeLauncher(gpu_as_cpu=True).start(repository, tmp_path / "triton.log") as server:
        served = Served(server, repository, report.triton_models, "doubler", "packed", 60.0, gpu_as_cpu=True)
        watcher = Watcher(model, served, None)
        step = model.path / "doubler" / "1" / "model.py"
        step.write_text(step.read_text() + "# saved\n")
        os.utime(step, (time.time() + 5, time.time() + 5))
        result = watcher.reload(watcher.changes())
    assert (result.reloaded, result.refused, server.loads) == (["doubler"], None, [("doubler", 60.0)])
    staged = read_config(repository / "doubler" / "config.pbtxt").config
    assert [group.kind for group in staged.instance_group] == [ModelInstanceGroup.KIND_CPU]
    assert (model.path / "doubler" / "config.pbtxt").read_text() == GPU_CONFIG
