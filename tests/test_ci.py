"""`packager ci`'s parts on their own, in seconds: which commit a push is compared with (real git), which
models Pants' answer marks (a stand-in Pants that prints addresses), what the gate's Pants may see, the
reports and matrices, and the CLI's refusals. The whole pipeline through real Pants, DVC, Triton and S3
is in test_ci_e2e.py."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from packager.ci import CiRun, ModelRun, Step, ci_table, markdown, matrix, run_gate, write_ci_junit
from packager.errors import ExitCode, Outcome, UsageError
from packager.modeldir import ModelDir, discover_models
from packager.pipeline import (
    Base,
    Selection,
    affected_models,
    base_for,
    pants_command,
    pants_environment,
    select_models,
)
from packager.release import Revision
from packager.subprocesses import ToolFailure
from tests.conftest import CI_REVISION_VARIABLES, RunPackager, git, new_model

MAIN = ("main",)


@pytest.fixture(autouse=True)
def no_ci_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests say which CI variables they mean; the CI running them lends none."""
    for name in [*CI_REVISION_VARIABLES, "CI_COMMIT_BEFORE_SHA", "CI_MERGE_REQUEST_DIFF_BASE_SHA"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GITHUB_EVENT_PATH", raising=False)
    monkeypatch.delenv("PACKAGER_PANTS", raising=False)


def fake_pants(directory: Path, output: str, status: int = 0) -> Path:
    """A stand-in for Pants that records its arguments and environment, prints `output` and exits `status`."""
    (directory / "pants-output").write_text(output + "\n")
    script = directory / "fake-pants"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{directory}/pants-args"\n'
        f'env > "{directory}/pants-env"\n'
        f'cat "{directory}/pants-output"\n'
        "echo 'pants says why' >&2\n"
        f"exit {status}\n"
    )
    script.chmod(0o755)
    return script


def commit_on(repo: Path, branch: str, path: str, text: str) -> str:
    git(repo, "checkout", "-q", branch)
    with (repo / path).open("a") as stream:
        stream.write(text)
    git(repo, "commit", "-q", "-am", f"change {path}")
    return git(repo, "rev-parse", "HEAD")


def test_a_branch_is_compared_with_where_it_left_main(model_repo: Path) -> None:
    fork = git(model_repo, "rev-parse", "main")
    commit_on(model_repo, "main", "models/fraud/fraud/config.pbtxt", "# on main\n")
    commit = commit_on(model_repo, "feature/fraud", "models/fraud/fraud/config.pbtxt", "# a\n")
    commit = commit_on(model_repo, "feature/fraud", "models/fraud/fraud/config.pbtxt", "# b\n")
    base = base_for(model_repo, Revision("feature/fraud", commit), production_branches=MAIN, since=None)
    assert base == Base(fork, "where feature/fraud left heads/main"), "every commit of the branch counts"


def test_main_is_compared_with_the_ci_systems_previous_tip_else_its_parent(
    model_repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = git(model_repo, "rev-parse", "main")
    second = commit_on(model_repo, "main", "models/fraud/fraud/config.pbtxt", "# a\n")
    third = commit_on(model_repo, "main", "models/fraud/fraud/config.pbtxt", "# b\n")
    revision = Revision("main", third)
    assert base_for(model_repo, revision, production_branches=MAIN, since=None) == Base(
        second, f"the parent of {third[:12]}"
    )
    monkeypatch.setenv("CI_COMMIT_BEFORE_SHA", "0" * 40)  # GitLab on a branch's first push
    assert base_for(model_repo, revision, production_branches=MAIN, since=None).commit == second
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"before": first, "after": third}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    assert base_for(model_repo, revision, production_branches=MAIN, since=None) == Base(
        first, "the CI system's previous tip"
    )
    assert (
        base_for(model_repo, Revision("main", first), production_branches=MAIN, since="main~0").commit
        == third
    ), "--since wins"


def test_a_base_the_clone_lacks_says_to_fetch_history(
    model_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = git(model_repo, "rev-parse", "main")
    with pytest.raises(UsageError, match="fetch-depth: 0"):
        base_for(model_repo, Revision("main", head), production_branches=MAIN, since="f" * 40)
    monkeypatch.setenv("CI_COMMIT_BEFORE_SHA", "e" * 40)
    with pytest.raises(UsageError, match="the CI system's previous tip names 'eeee"):
        base_for(model_repo, Revision("main", head), production_branches=MAIN, since=None)
    assert (
        base_for(model_repo, Revision("feature/fraud", head), production_branches=MAIN, since=None).commit
        == head
    )


def test_the_first_commit_has_no_base_and_affects_every_model(model_repo: Path) -> None:
    head = git(model_repo, "rev-parse", "main")
    base = base_for(model_repo, Revision("main", head), production_branches=MAIN, since=None)
    assert base.commit is None
    models = discover_models((), model_repo)
    assert affected_models(model_repo, models, base=base, pants=["false"]) == models, "Pants is not asked"


def test_models_are_marked_by_the_addresses_pants_lists(model_repo: Path, tmp_path: Path) -> None:
    new_model(model_repo / "models", "churn", (model_repo / "models/fraud/requirements.lock").read_text())
    new_model(model_repo / "models", "churn_v2", (model_repo / "models/fraud/requirements.lock").read_text())
    models = discover_models((), model_repo)
    listed = "\n".join(
        [
            "models/churn/churn/1/model.py:../../steps",  # a file of the model
            "models/churn:train",  # a target of its BUILD
            "//pants.toml:bootstrap",
            "libs/modelkit/onnx.py:../modelkit",
            "3rdparty/python:python-default#numpy",
        ]
    )
    pants = fake_pants(tmp_path, listed)
    affected = affected_models(model_repo, models, base=Base("a" * 40, "test"), pants=[str(pants)])
    assert [model.name for model in affected] == ["churn"], "churn_v2 is not under models/churn/"
    arguments = (tmp_path / "pants-args").read_text().split()
    assert arguments == [f"--changed-since={'a' * 40}", "--changed-dependents=transitive", "list"]


def test_models_are_selected_by_name_else_all_else_by_what_the_push_affects(
    model_repo: Path, tmp_path: Path
) -> None:
    new_model(model_repo / "models", "churn", (model_repo / "models/fraud/requirements.lock").read_text())
    git(model_repo, "add", "-A")
    git(model_repo, "commit", "-q", "-m", "churn")
    fork = git(model_repo, "rev-parse", "main")
    git(model_repo, "branch", "-f", "feature/fraud", "main")
    commit = commit_on(model_repo, "feature/fraud", "models/churn/churn/config.pbtxt", "# a\n")
    known = discover_models((), model_repo)
    pants = fake_pants(tmp_path, "models/churn/churn/config.pbtxt:../model")

    def select(named: list[ModelDir], every: bool, since: str | None = None) -> Selection:
        revision = Revision("feature/fraud", commit)
        return select_models(
            model_repo, known, named, every=every, revision=revision, production_branches=MAIN, since=since,
            pants=[str(pants)],
        )  # fmt: skip

    fraud = [model for model in known if model.name == "fraud"]
    assert select(fraud, every=True) == Selection("named", fraud, 2), "names win over --all"
    assert select([], every=True) == Selection("--all", known, 2)
    assert not (tmp_path / "pants-args").exists(), "Pants is asked only which models a push affects"
    affected = select([], every=False)
    assert (affected.kind, affected.names, affected.considered) == ("affected", ["churn"], 2)
    assert affected.base == Base(fork, "where feature/fraud left heads/main")
    assert (tmp_path / "pants-args").read_text().split()[0] == f"--changed-since={fork}"
    assert select([], every=False, since=commit).base == Base(commit, f"--since {commit}")


def test_a_failing_pants_is_a_tool_failure_with_its_output(model_repo: Path, tmp_path: Path) -> None:
    pants = fake_pants(tmp_path, "", status=1)
    with pytest.raises(ToolFailure, match="(?s)failed \\(exit 1\\).*pants says why") as raised:
        affected_models(
            model_repo, discover_models((), model_repo), base=Base("a" * 40, "test"), pants=[str(pants)]
        )
    assert raised.value.exit_code == ExitCode.ENVIRONMENT_ERROR


def test_pants_environment_has_no_credentials_and_runs_concurrently_under_pants_run(
    model_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "GITHUB_TOKEN": "ghs",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc",
        "PACKAGER_SIGNING_KEY": "/keys/release.pem",
        "PYTHONPATH": "/ours",
    }
    kept = {"PANTS_PANTSD": "false", "PACKAGER_CACHE": "/cache"}
    for name, value in {**secrets, **kept}.items():
        monkeypatch.setenv(name, value)
    environment = pants_environment(dict(os.environ))
    assert not set(secrets) & set(environment)
    assert {name: environment[name] for name in kept} == kept and environment["PATH"] == os.environ["PATH"]

    monkeypatch.setenv("PACKAGER_PANTS", "pants --no-local-cache")
    assert pants_command(model_repo) == ["pants", "--no-local-cache"]
    monkeypatch.setenv("__PANTS_BIN_NAME", "./pants")  # what a process `pants run` started inherits
    assert pants_command(model_repo) == ["pants", "--no-local-cache", "--concurrent"]


# Stands in for Pants inside the gate: what a model's test could do there, reported on stdout (the log).
GATE_PROBE = """#!/usr/bin/env python3
import glob, json, os, socket, sys

def reached(target):
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return True
    except OSError:
        return False

def tunnel(host):
    proxy = os.environ["HTTPS_PROXY"].rsplit(":", 1)
    with socket.create_connection((proxy[0].removeprefix("http://"), int(proxy[1])), timeout=10) as conn:
        conn.sendall(f"CONNECT {host}:443 HTTP/1.1\\r\\nHost: {host}:443\\r\\n\\r\\n".encode())
        return conn.recv(64).decode().split(" ")[1]

def readable(path):
    try:
        return bool(open(path, "rb").read(1))
    except OSError:
        return False

def writable(path):
    try:
        open(path, "a").close()
        return True
    except OSError:
        return False

environs = []
for path in glob.glob("/proc/*/environ"):
    try:
        environs.append(open(path, "rb").read().decode(errors="replace"))
    except OSError:
        pass
looked = json.loads(sys.argv[1])
try:
    socket.getaddrinfo("pypi.org", 443)
    dns = True
except OSError:
    dns = False
print(json.dumps({
    "args": sys.argv[2:],
    "environment": dict(os.environ),
    "processes": sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit()),
    "secret_in_a_process": [text for text in environs if "AWS_SECRET_ACCESS_KEY" in text],
    "readable": [path for path in looked["files"] if readable(path)],
    "writable": [path for path in looked["writable"] if writable(path)],
    "reached": [target for target in looked["tcp"] if reached(target)],
    "dns": dns,
    "tunnels": {host: tunnel(host) for host in ("pypi.org", "example.com", "169.254.169.254")},
}))
"""


def test_the_gate_runs_where_the_packager_its_secrets_and_the_network_are_out_of_reach(
    model_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_service: int
) -> None:
    """A model's test in the gate (here, a stand-in for Pants that probes as one would): no credential in
    any process it can see, not the packager's process, not the signing key (even inside the repository)
    nor the home directory's credentials, no write to the sources, no container engine, no service of
    this machine, no metadata address, no DNS; only the package index, through the proxy."""
    key = model_repo / "keys" / "release.key"
    key.parent.mkdir()
    key.write_text("PRIVATE KEY\n")
    aws = Path.home() / ".aws-probe-credentials"
    aws.write_text("[default]\naws_secret_access_key = secret\n")
    for name, value in {
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SHARED_CREDENTIALS_FILE": str(aws),
        "PACKAGER_SIGNING_KEY": str(key),
        "DOCKER_HOST": "unix:///run/podman.sock",
    }.items():
        monkeypatch.setenv(name, value)
    probe = model_repo / "probe-pants"
    probe.write_text(GATE_PROBE)
    probe.chmod(0o755)
    looked = {
        "files": [str(key), str(aws), f"/proc/{os.getpid()}/environ"],
        "writable": [
            str(model_repo / "models" / "fraud" / "model_version.txt"),
            str(model_repo / "dist" / "x"),
        ],
        "tcp": [f"127.0.0.1:{loopback_service}", "169.254.169.254:80"],
    }
    try:
        model = discover_models((), model_repo)[0]
        gate = run_gate(
            model_repo, model, pants=[str(probe), json.dumps(looked)], log=tmp_path / "fraud-gate.log"
        )
    finally:
        aws.unlink()
    report = json.loads(next(line for line in gate.log.read_text().splitlines() if line.startswith("{")))
    assert gate.passed and report["args"] == ["--no-pantsd", "lint", "check", "test", "models/fraud::"]
    assert report["secret_in_a_process"] == [] and os.getpid() not in report["processes"]
    assert "AWS_SECRET_ACCESS_KEY" not in report["environment"]
    assert "DOCKER_HOST" not in report["environment"], "the container engine is root on its machine"
    assert report["readable"] == [], "the signing key, the credentials file and our environment are hidden"
    assert report["writable"] == [str(model_repo / "dist" / "x")], "Pants' outputs only, never the sources"
    assert report["reached"] == [] and report["dns"] is False
    assert report["tunnels"] == {"pypi.org": "200", "example.com": "403", "169.254.169.254": "403"}
    assert "refused 'CONNECT example.com:443 HTTP/1.1'" in gate.log.read_text()


def _run() -> CiRun:
    revision = Revision("feature/x", "c" * 40)
    churn = ModelRun(
        "churn",
        [
            Step("weights", Outcome.PASSED, 1.0),
            Step("gate", Outcome.PASSED, 20.0),
            Step("build", Outcome.PASSED, 3.0, "churn_1.tar.gz (abc)"),
            Step("replay", Outcome.PASSED, 9.0, "10/10 cases passed"),
            Step(
                "publish", Outcome.PASSED, 0.5, "uploaded: s3://staging/feature-x/cccccccccccc/churn_1.tar.gz"
            ),
        ],
    )
    digits = ModelRun("digits", [Step("weights", Outcome.PASSED, 2.0)])
    digits.fail(
        "gate",
        12.0,
        detail="`pants lint check test models/digits::` failed\nblack",
        code=ExitCode.MODEL_ERROR,
    )
    return CiRun(
        revision,
        "affected",
        30,
        ["churn", "digits"],
        Base("b" * 40, "where feature/x left heads/main"),
        [churn, digits],
    )


def test_reports_show_every_step_of_every_model(tmp_path: Path) -> None:
    run = _run()
    assert run.exit_code() == ExitCode.MODEL_ERROR
    lines = ci_table(run).splitlines()
    assert lines[0].split() == ["model", "version", "weights", "gate", "build", "replay", "publish", "result"]
    assert lines[2].split()[:7] == ["churn", "-", "ok", "ok", "ok", "ok", "ok"]
    assert lines[3].split()[:7] == ["digits", "-", "ok", "FAILED", "-", "-", "-"]

    text = markdown(run)
    assert "### packager ci: `feature/x` at `cccccccccccc`" in text
    assert (
        "2 of 30 models affected since bbbbbbbbbbbb (where feature/x left heads/main): churn, digits" in text
    )
    assert "| churn | - | ok | ok | ok | ok | ok | uploaded: s3://staging/" in text
    assert "<details><summary>digits: gate</summary>" in text

    write_ci_junit(run, tmp_path / "junit.xml")
    suites = {
        suite.get("name"): suite for suite in ElementTree.parse(tmp_path / "junit.xml").iter("testsuite")
    }
    assert suites["churn"].get("failures") == "0" and suites["churn"].get("time") == "33.500"
    assert (suites["digits"].get("failures"), suites["digits"].get("skipped")) == ("1", "3")
    failure = suites["digits"].find("testcase[@name='gate']/failure")
    assert failure is not None and failure.get("message") == "`pants lint check test models/digits::` failed"


def test_a_tool_failure_outranks_a_model_failure_in_the_exit_status() -> None:
    run = _run()
    run.runs.append(
        ModelRun("fraud").fail(
            "weights", 1.0, detail="the DVC remote did not answer", code=ExitCode.ENVIRONMENT_ERROR
        )
    )
    assert run.exit_code() == ExitCode.ENVIRONMENT_ERROR


def test_matrices_for_github_and_gitlab() -> None:
    assert json.loads(matrix(["churn", "digits"], "github")) == {
        "include": [{"model": "churn"}, {"model": "digits"}]
    }
    assert json.loads(matrix([], "github")) == {"include": []}
    child = json.loads(matrix(["churn"], "gitlab"))
    assert child == {
        "include": [{"local": ".gitlab/packager-model.yml"}],
        "model:churn": {"extends": ".packager-model", "variables": {"PACKAGER_MODEL": "churn"}},
        "publish:churn": {
            "extends": ".packager-publish",
            "needs": [
                {"pipeline": "$PARENT_PIPELINE_ID", "job": "affected"},
                {"job": "model:churn", "artifacts": False},
            ],
            "variables": {"PACKAGER_MODEL": "churn"},
        },
    }
    assert list(json.loads(matrix([], "gitlab"))) == ["nothing-affected"], "a child pipeline needs a job"


def test_cli_refuses_since_with_all_and_runs_only_in_a_monorepo(
    run_packager: RunPackager, model_repo: Path, tmp_path: Path
) -> None:
    refused = run_packager("ci", "--all", "--since", "HEAD~1", cwd=model_repo)
    assert refused.returncode == 2 and "--since selects the affected models" in refused.stderr
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    alone = run_packager("ci", cwd=outside)
    assert alone.returncode == 2 and "runs in a monorepo checkout" in alone.stderr


def test_nothing_affected_exits_0_with_a_summary_and_a_report(
    run_packager: RunPackager, model_repo: Path, tmp_path: Path
) -> None:
    commit_on(model_repo, "feature/fraud", "models/fraud/fraud/config.pbtxt", "# a\n")
    summary = tmp_path / "summary.md"
    environment = {
        "PACKAGER_PANTS": str(fake_pants(tmp_path, "//pants.toml:bootstrap")),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    result = run_packager("ci", cwd=model_repo, env=environment)
    assert result.returncode == 0, result.stderr
    assert "0 of 1 model affected since" in result.stderr and "nothing affected" in result.stderr
    assert "### packager ci: `feature/fraud`" in summary.read_text()
    junit = ElementTree.parse(model_repo / "dist" / "ci" / "junit.xml").getroot()
    assert junit.get("name") == "packager ci" and not list(junit)
    matrix_run = run_packager("ci", "--matrix", "github", cwd=model_repo, env=environment)
    assert json.loads(matrix_run.stdout) == {"include": []}


def test_a_model_that_fails_its_gate_publishes_nothing(
    run_packager: RunPackager, model_repo: Path, tmp_path: Path
) -> None:
    commit_on(model_repo, "feature/fraud", "models/fraud/fraud/config.pbtxt", "# a\n")
    pants = fake_pants(tmp_path, "models/fraud/fraud/config.pbtxt:../model", status=0)
    failing_gate = tmp_path / "gate-fails"
    failing_gate.write_text(
        f'#!/bin/sh\ncase " $* " in *" lint "*) echo "would reformat model.py"; exit 1;; esac\nexec {pants} "$@"\n'
    )
    failing_gate.chmod(0o755)
    stores = tmp_path / "stores"
    environment = {
        "PACKAGER_PANTS": str(failing_gate),
        "PACKAGER_STAGING_URI": stores.as_uri() + "/staging",
        "PACKAGER_PRODUCTION_URI": stores.as_uri() + "/production",
    }
    result = run_packager("ci", "--json", cwd=model_repo, env=environment)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["selected"] == ["fraud"] and report["models"][0]["push"] is None
    gate = report["models"][0]["steps"][1]
    assert gate["outcome"] == "failed" and "would reformat model.py" in gate["detail"]
    assert not stores.exists() or not any(path.is_file() for path in stores.rglob("*"))
