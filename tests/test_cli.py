"""The packager CLI as users call it: exit codes, output formats, help, and no tracebacks."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import click
import pytest

import packager
from packager import cli
from packager.cli.serving import _serve
from packager.errors import ExitCode
from packager.modeldir import TritonModel, example_input_tensors, read_config
from packager.settings import DEFAULT_RUNTIME
from packager.triton import Endpoints, Served, curl_command, free_ports
from tests.conftest import RunPackager, doubler_repository, one_model_dir, serve_banner, start_packager

CORPUS = Path(__file__).parent / "corpus"
GOOD = CORPUS / "good" / "single_python"
BAD = CORPUS / "bad" / "name_mismatch"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A monorepo with two models under models/: one good, one with a wrong config name."""
    (tmp_path / "pants.toml").write_text("")
    shutil.copytree(GOOD, tmp_path / "models" / "scorer")
    shutil.copytree(BAD, tmp_path / "models" / "broken")
    (tmp_path / "models" / "broken" / "case.toml").unlink()
    return tmp_path


def test_good_model_exits_0_with_summary(run_packager: RunPackager) -> None:
    result = run_packager("validate", str(GOOD), cwd=GOOD.parent)
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == "1 model checked: 1 ok\n"


def test_bad_model_exits_1_with_path_line_col(run_packager: RunPackager) -> None:
    result = run_packager("validate", "name_mismatch", cwd=BAD.parent / ".." / ".." / "..")
    assert result.returncode == 2, "a bare name is looked up under models/, which this repo does not have"
    result = run_packager("validate", "./name_mismatch", cwd=BAD.parent)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "name_mismatch/scorer/config.pbtxt:1:7: name 'score' must equal its directory name 'scorer' "
        "(Triton refuses the model otherwise)"
    ]
    assert result.stderr == "1 model checked: 0 ok, 1 with 1 problem\n"


def test_every_problem_of_every_model_is_reported_at_once(run_packager: RunPackager) -> None:
    result = run_packager("validate", "bad", cwd=CORPUS)
    assert result.returncode == 1
    cases = sorted(path.name for path in (CORPUS / "bad").iterdir())
    reported = set()
    for line in result.stdout.splitlines():
        match = re.match(r"bad/([^/:]+)[/:]", line)
        assert match, line
        reported.add(match.group(1))
    assert reported == set(cases)
    assert result.stderr.startswith(f"{len(cases)} models checked: 0 ok, {len(cases)} with ")
    assert "Traceback" not in result.stderr


def test_names_resolve_under_models_and_default_is_all_models(run_packager: RunPackager, repo: Path) -> None:
    named = run_packager("validate", "scorer", cwd=repo / "models" / "scorer")
    assert named.returncode == 0
    everything = run_packager("validate", cwd=repo)
    assert everything.returncode == 1
    assert everything.stdout.startswith("models/broken/scorer/config.pbtxt:1:7: name 'score'")
    assert everything.stderr == "2 models checked: 1 ok, 1 with 1 problem\n"


def test_json_report(run_packager: RunPackager, repo: Path) -> None:
    result = run_packager("validate", "--json", "broken", "scorer", cwd=repo)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    broken, scorer = report["models"]
    assert (broken["name"], broken["version"], broken["ok"]) == ("broken", 1, False)
    assert broken["diagnostics"] == [
        {
            "path": "models/broken/scorer/config.pbtxt",
            "line": 1,
            "column": 7,
            "message": "name 'score' must equal its directory name 'scorer' (Triton refuses the model otherwise)",
            "rule": "config-name",
        }
    ]
    assert (scorer["name"], scorer["ok"], scorer["triton_models"]) == ("scorer", True, ["scorer"])


def test_unknown_model_name_is_a_usage_error_listing_the_models(
    run_packager: RunPackager, repo: Path
) -> None:
    result = run_packager("validate", "scorre", cwd=repo)
    assert result.returncode == 2
    assert "scorre: no such model under" in result.stderr
    assert "(available: broken, scorer)" in result.stderr
    assert "Traceback" not in result.stderr


def test_path_without_models_is_a_usage_error(run_packager: RunPackager, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_packager("validate", "empty", cwd=tmp_path)
    assert result.returncode == 2
    assert "empty: no model here (a model is a directory holding model_version.txt)" in result.stderr


def test_outside_a_repo_without_arguments_is_a_usage_error(run_packager: RunPackager, tmp_path: Path) -> None:
    result = run_packager("validate", cwd=tmp_path)
    assert result.returncode == 2
    assert "not inside a model monorepo" in result.stderr


def test_unknown_option_is_a_usage_error(run_packager: RunPackager, tmp_path: Path) -> None:
    result = run_packager("validate", "--frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "No such option '--frobnicate'" in result.stderr


@pytest.mark.parametrize("command", [[], *([name] for name in sorted(cli.COMMANDS))])
def test_every_command_has_help_with_exit_codes(
    run_packager: RunPackager, tmp_path: Path, command: list[str]
) -> None:
    result = run_packager(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Exit codes:" in result.stdout
    assert "3  a tool or service the command needs failed" in result.stdout
    assert "70 a bug in the packager" in result.stdout


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    """Every command by its full name (`image build`), the groups' subcommands included."""
    found: dict[str, click.Command] = {}
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None and command.name == name, f"packager.cli.COMMANDS[{name!r}]"
        if isinstance(command, click.Group):
            found.update(_commands(command, f"{prefix}{name} "))
        else:
            found[f"{prefix}{name}"] = command
    return found


def test_version_and_help_load_none_of_the_pipeline() -> None:
    """`packager --version` and `--help` import the CLI's root only (the commands' modules, and the
    pipeline with tritonclient, numpy and boto3, load when a command runs), yet list every command."""
    script = (
        "import sys\n"
        "from packager.cli import cli\n"
        "for arguments in (['--version'], ['--help']):\n"
        "    try:\n"
        "        cli.main(arguments, prog_name='packager')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "import json\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('packager.', 'numpy', 'tritonclient')))))\n"
    )
    environment = {"PYTHONPATH": os.pathsep.join(os.path.abspath(entry) for entry in sys.path)}
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    *output, loaded = result.stdout.strip().splitlines()
    assert json.loads(loaded) == [
        "packager.cli",
        "packager.cli.options",
        "packager.errors",
        "packager.reporting",
    ]
    assert output[0] == f"packager, version {packager.__version__}"
    listed = "\n".join(output)
    for name, (_, _, summary) in cli.COMMANDS.items():
        assert f"  {name}" in listed and summary in listed, f"packager --help lists {name}"


@pytest.mark.parametrize("name", sorted(_commands(cli.cli)))
def test_every_command_reports_as_json_too(name: str) -> None:
    options = {
        option for parameter in _commands(cli.cli)[name].params for option in getattr(parameter, "opts", [])
    }
    assert "--json" in options, f"packager {name} has no --json"


def test_wrong_inputs_exit_1_and_name_what_is_wrong(run_packager: RunPackager, model_repo: Path) -> None:
    missing = run_packager("replay", "--artifact", "dist/nothing_1.tar.gz", cwd=model_repo)
    assert missing.returncode == 1 and "dist/nothing_1.tar.gz: no such artifact file" in missing.stderr
    unknown = run_packager("verify", "nothing_1.tar.gz", cwd=model_repo)
    assert unknown.returncode == 1 and "nothing_1.tar.gz: no such artifact file" in unknown.stderr
    requirements = model_repo / "models" / "fraud" / "requirements.txt"
    requirements.write_text(requirements.read_text() + "packager-no-such-package-7f3a==1.0\n")
    stale = run_packager("env", "fraud", cwd=model_repo)
    assert stale.returncode == 1 and "requirements.lock:1:1: stale: requirements.txt changed" in stale.stdout
    locked = run_packager("lock", "fraud", cwd=model_repo)
    assert locked.returncode == 1, locked.stderr
    assert "models/fraud/requirements.txt: uv pip compile cannot satisfy these requirements" in locked.stderr
    assert "packager-no-such-package-7f3a" in locked.stderr


def test_a_tampered_artifact_is_never_served(run_packager: RunPackager, model_repo: Path) -> None:
    built = run_packager("build", "fraud", "--json", cwd=model_repo)
    assert built.returncode == 0, built.stderr
    archive = Path(json.loads(built.stdout)["artifacts"][0]["path"])
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit
    archive.write_bytes(bytes(data))
    replayed = run_packager("replay", "--artifact", str(archive), "--json", cwd=model_repo)
    assert replayed.returncode == 1
    error = json.loads(replayed.stdout)["models"][0]["error"]
    assert "does not verify; nothing was run" in error
    assert not (model_repo / "dist" / "logs" / "fraud-artifact.log").exists(), "no server was started"


def test_a_bug_is_an_internal_error_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def explode(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("packager.cli.models.validate_models", explode)
    monkeypatch.setattr(sys, "argv", ["packager", "validate", str(GOOD)])
    monkeypatch.delenv("PACKAGER_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 70
    err = capsys.readouterr().err
    assert (
        "packager: internal error (a bug in the packager): RuntimeError('boom'); rerun with PACKAGER_DEBUG=1"
        in err
    )
    assert "Traceback" not in err

    monkeypatch.setenv("PACKAGER_DEBUG", "1")
    with pytest.raises(SystemExit):
        cli.main()
    assert "Traceback" in capsys.readouterr().err


def _send(curl: str) -> tuple[int, dict[str, Any]]:
    """Send what a printed curl command sends: with curl where it is installed, else with urllib (its URL
    and body); the status and the JSON answer."""
    if shutil.which("curl"):
        sent = subprocess.run(f"{curl} -w '\\n%{{http_code}}'", shell=True, capture_output=True, text=True)
        assert sent.returncode == 0, sent.stderr
        body, status = sent.stdout.rsplit("\n", 1)
        return int(status), json.loads(body)
    words = shlex.split(curl)
    data = Path(words[-1][1:]).read_bytes() if words[-1].startswith("@") else words[-1].encode()
    request = urllib.request.Request(words[2], data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


IMAGE_TOTAL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("TOTAL", pb_utils.get_input_tensor_by_name(r, "IMAGE").as_numpy().sum(keepdims=True).reshape(1))]
            )
            for r in requests
        ]
"""
IMAGE_TOTAL_CONFIG = """backend: "python"
input [ { name: "IMAGE", data_type: TYPE_FP32, dims: [ 3, 224, 224 ] } ]
output [ { name: "TOTAL", data_type: TYPE_FP32, dims: [ 1 ] } ]
"""


def test_serve_sends_an_image_sized_example_from_a_file(tmp_path: Path) -> None:
    """150,528 zeros are too long for one shell argument: the curl sends them from a file beside the log."""
    (tmp_path / "pants.toml").write_text("")
    one_model_dir(tmp_path / "models", "image", IMAGE_TOTAL, IMAGE_TOTAL_CONFIG)
    process = start_packager("serve", "image", cwd=tmp_path)
    try:
        lines = serve_banner(process)
        curl = next(line.strip() for line in lines if line.startswith("  curl "))
        assert len(curl) < 1000 and " -d @" in curl, curl
        assert (tmp_path / "dist" / "logs" / "image-example.json").is_file()
        status, answer = _send(curl)
        assert status == 200 and answer["outputs"][0]["data"] == [0.0]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def test_serve_on_a_chosen_http_port_answers_the_curl_it_prints(model_repo: Path) -> None:
    (port,) = free_ports(1)
    process = start_packager("serve", "fraud", "--http-port", str(port), cwd=model_repo)
    try:
        lines = serve_banner(process)
        assert f"  HTTP     http://127.0.0.1:{port}/v2/models/fraud\n" in lines, "".join(lines)
        assert any(line.startswith("  gRPC     127.0.0.1:") for line in lines)
        assert any(line.startswith("  metrics  http://127.0.0.1:") for line in lines)
        curl = next(line.strip() for line in lines if line.startswith("  curl "))
        assert f"http://127.0.0.1:{port}/v2/models/fraud/infer" in curl
        status, answer = _send(curl)
        assert status == 200
        assert answer["model_name"] == "fraud" and answer["outputs"][0]["name"] == "SCORE"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert process.returncode == 130


def test_a_taken_port_is_refused_before_triton_starts(run_packager: RunPackager, model_repo: Path) -> None:
    out_of_range = run_packager("serve", "fraud", "--http-port", "0", cwd=model_repo)
    assert out_of_range.returncode == 2 and "0 is not in the range 1<=x<=65535" in out_of_range.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_packager("serve", "fraud", "--grpc-port", str(port), cwd=model_repo)
    assert result.returncode == 1
    assert f"packager: error: port {port} (--grpc-port) is already in use on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (model_repo / "dist" / "logs" / "fraud-serve.log").exists(), "no server was started"


class StoppedServer:
    """A server that has exited: `serve` prints where it answered, then says it died."""

    endpoints = Endpoints("127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002")

    def alive(self) -> bool:
        return False

    def log_excerpt(self) -> str:
        return "  | (gone)"


@pytest.mark.parametrize("as_json", [False, True])
def test_serve_summarizes_the_endpoints_with_a_curl_of_the_top_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    repository = doubler_repository(tmp_path)
    doubler = TritonModel(repository / "doubler", read_config(repository / "doubler" / "config.pbtxt"))
    served = Served(StoppedServer(), repository, {"doubler": doubler}, "doubler", "unpacked")  # type: ignore[arg-type]
    code = _serve("doubler", DEFAULT_RUNTIME, served=served, log_path=tmp_path / "serve.log", as_json=as_json)
    assert code == ExitCode.ENVIRONMENT_ERROR
    curl = curl_command("127.0.0.1:8000", "doubler", inputs=example_input_tensors(doubler.config))
    assert "/v2/models/doubler/infer" in curl and '"shape": [1, 2]' in curl
    output = capsys.readouterr().out
    if as_json:
        document = json.loads(output)
        assert (document["http"], document["curl"]) == ("http://127.0.0.1:8000/v2/models/doubler", curl)
        return
    assert output.splitlines()[1:7] == [
        "  HTTP     http://127.0.0.1:8000/v2/models/doubler",
        "  gRPC     127.0.0.1:8001",
        "  metrics  http://127.0.0.1:8002/metrics",
        "  models   doubler",
        f"  log      {tmp_path / 'serve.log'}",
        "Try doubler, the top-level model, with an example request (zeros):",
    ]
    assert f"  {curl}" in output.splitlines()


SLOW_INITIALIZE = """

import time


def _initialize(self, args):
    time.sleep(60)


TritonPythonModel.initialize = _initialize
"""


def test_load_timeout_reaches_the_loads_of_serve_replay_and_push(
    run_packager: RunPackager, model_repo: Path
) -> None:
    none = run_packager("replay", "fraud", "--load-timeout", "0", cwd=model_repo)
    assert none.returncode == 2 and "0 is not in the range x>0" in none.stderr
    for name in ("preprocess", "postprocess"):
        step = model_repo / "models" / "fraud" / name / "1" / "model.py"
        step.write_text(step.read_text() + SLOW_INITIALIZE)
    # Every load ends before the first failure in name order is raised.
    waited = "loading 'postprocess' did not finish within 0.5 s (a hung load, or a slower one: "
    waited += "raise --load-timeout)"
    served = run_packager("serve", "fraud", "--load-timeout", "0.5", cwd=model_repo)
    assert served.returncode == 1 and waited in served.stderr, served.stderr
    replayed = run_packager("replay", "fraud", "--load-timeout", "0.5", "--json", cwd=model_repo)
    assert replayed.returncode == 1 and waited in json.loads(replayed.stdout)["models"][0]["error"]
    pushed = run_packager(
        "push", "fraud", "--branch", "feature/fraud", "--load-timeout", "0.5", "--json", cwd=model_repo
    )
    report = json.loads(pushed.stdout)["models"][0]
    assert pushed.returncode == 1 and waited in report["replay"]["error"], pushed.stdout + pushed.stderr
    assert report["outcome"] is None, "nothing was published"
