"""`packager ci` end to end, through the real parts: this monorepo committed to a temporary origin and
cloned as CI clones it, with real git history, real Pants (the affected models and the quality gate),
real DVC (this repository's `ci:dvc` PEX, from the in-repository remote), a real Triton, and the stores
on S3 over HTTP (moto on loopback).

Pants puts the monorepo's files in this test's sandbox (`//:monorepo`) and builds the DVC PEX
(runtime_package_dependencies in tests/BUILD). The story runs in order on one clone: each test branches
from main as it finds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci.monorepo import copy_monorepo
from tests.conftest import child_environment, git, s3_client

REPO = Path(__file__).parent.parent
DVC_PEX = Path("ci/dvc.pex")
CI_TIMEOUT = 900


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A CI checkout of main, cloned from an origin holding this monorepo in one commit."""
    assert DVC_PEX.is_file(), "run this test through `./pants test`, which builds the DVC PEX"
    origin = copy_monorepo(REPO, tmp_path_factory.mktemp("origin"), {"churn": "churn", "digits": "digits"})
    checkout = tmp_path_factory.mktemp("ci") / "repo"
    git(origin.parent, "clone", "-q", str(origin), str(checkout))
    yield checkout


def ci(clone: Path, s3: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    """`packager ci --json ARGS` in the clone as a CI job runs it: the exit status, the report, and all it
    printed (for assertion messages)."""
    environment = child_environment(
        {
            **s3,
            "PACKAGER_DVC": f"{sys.executable} {DVC_PEX.absolute()}",
            "DVC_NO_ANALYTICS": "1",
            "PANTS_PANTSD": "false",  # no daemon outlives the test
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "packager", "ci", "--json", *args],
        cwd=clone,
        env=environment,
        capture_output=True,
        text=True,
        timeout=CI_TIMEOUT,
    )
    try:
        report = json.loads(result.stdout) if result.stdout.strip() else {}
    except ValueError:
        report = {}
    return result.returncode, report, result.stderr + result.stdout


def keys(s3: dict[str, str], store: str) -> list[str]:
    """The object keys under a store's URI."""
    bucket, _, prefix = s3[f"PACKAGER_{store.upper()}_URI"].removeprefix("s3://").partition("/")
    listed = s3_client(s3["AWS_ENDPOINT_URL_S3"]).list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return sorted(item["Key"].removeprefix(prefix + "/") for item in listed.get("Contents", []))


def commit_change(clone: Path, branch: str, edits: dict[str, str], message: str) -> str:
    """Branch from main, append to files, commit; the new commit."""
    git(clone, "checkout", "-q", "main")
    git(clone, "checkout", "-q", "-b", branch)
    for path, text in edits.items():
        with (clone / path).open("a") as stream:
            stream.write(text)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", message)
    return git(clone, "rev-parse", "HEAD")


def outcomes(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{model: {step: outcome}}."""
    return {
        model["model"]: {step["step"]: step["outcome"] for step in model["steps"]}
        for model in report["models"]
    }


# A model's own test that looks, during the gate, for what the job holds: the credentials in any process's
# environment, the signing key, the S3 service the job publishes to, the metadata address, DNS.
HOSTILE_TEST = '''"""Looks for what the CI job holds; passes only if it finds nothing."""

from __future__ import annotations

import glob
import socket

import pytest

KEY = "{key}"
TARGETS = [("127.0.0.1", {port}), ("169.254.169.254", 80)]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _connects(target: tuple[str, int]) -> bool:
    try:
        socket.create_connection(target, timeout=3).close()
        return True
    except OSError:
        return False


def test_the_job_is_out_of_reach() -> None:
    assert [path for path in glob.glob("/proc/*/environ") if b"AWS_SECRET_ACCESS_KEY" in _read(path)] == []
    assert _read(KEY) == b""
    assert [target for target in TARGETS if _connects(target)] == []
    with pytest.raises(OSError):
        socket.getaddrinfo("pypi.org", 443)
'''


def test_a_branch_stages_what_it_changed_main_publishes_it_and_refuses_new_weights_without_a_bump(
    clone: Path, s3: dict[str, str], tmp_path: Path
) -> None:
    """The story of a change, with the model's own tests hostile: they look for the job's secrets and
    network during the gate, and pass only if they find nothing there."""
    key = tmp_path / "release.key"
    keygen = subprocess.run(
        [
            sys.executable,
            "-m",
            "packager",
            "keygen",
            "--private",
            str(key),
            "--public",
            str(tmp_path / "pub"),
        ],
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert keygen.returncode == 0, keygen.stderr
    s3 = {**s3, "PACKAGER_SIGNING_KEY": str(key)}
    port = int(s3["AWS_ENDPOINT_URL_S3"].rsplit(":", 1)[1])
    edits = {
        "models/churn/churn/1/model.py": "\n\n# Scored in one batch.\n",
        "models/churn/tests/test_isolation.py": HOSTILE_TEST.format(key=key, port=port),
    }
    commit = commit_change(clone, "feature/churn", edits, "churn: a comment, and a test that looks around")

    status, report, stderr = ci(clone, s3)
    assert status == 0, stderr
    assert report["selected"] == ["churn"] and report["considered"] == 2
    assert report["base_reason"] == "where feature/churn left heads/main"
    assert outcomes(report)["churn"] == dict.fromkeys(
        ["weights", "gate", "build", "replay", "publish"], "passed"
    )
    assert keys(s3, "staging") == [f"feature-churn/{commit[:12]}/churn_1.tar.gz"]
    assert keys(s3, "production") == []

    git(clone, "checkout", "-q", "main")
    git(clone, "merge", "-q", "--no-ff", "-m", "Merge feature/churn", "feature/churn")
    merge = git(clone, "rev-parse", "HEAD")
    status, report, stderr = ci(clone, s3)
    assert status == 0, stderr
    assert report["branch"] == "main" and report["selected"] == ["churn"]
    assert "churn_1.tar.gz" in keys(s3, "production")
    history = subprocess.run(
        [sys.executable, "-m", "packager", "releases", "churn", "--json"],
        cwd=clone,
        env=child_environment(s3),
        capture_output=True,
        text=True,
        timeout=120,
    )
    entries = json.loads(history.stdout)["churn"]["entries"]
    assert [(entry["action"], entry["version"], entry["commit"]) for entry in entries] == [
        ("publish", 1, merge)
    ]
    published = keys(s3, "production")

    # New weights (the same model, re-exported with a description) on main, model_version.txt unchanged.
    weight = clone / "models" / "churn" / "churn" / "1" / "model.onnx"
    weight.write_bytes(weight.read_bytes() + b"\x32\x09retrained")  # ModelProto.doc_string
    dvc = subprocess.run(
        [sys.executable, str(DVC_PEX.absolute()), "add", "-q", str(weight.relative_to(clone))],
        cwd=clone,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dvc.returncode == 0, dvc.stdout + dvc.stderr
    git(clone, "commit", "-q", "-am", "churn: retrained, version not bumped")
    status, report, stderr = ci(clone, s3)
    assert status == 1, stderr
    assert outcomes(report)["churn"]["publish"] == "failed"
    refusal = next(step for step in report["models"][0]["steps"] if step["step"] == "publish")["detail"]
    assert "a published version never changes" in refusal
    assert "bump models/churn/model_version.txt (now 1)" in refusal
    assert report["models"][0]["push"]["replay"] is None, "refused before its replay"
    assert keys(s3, "production") == published


def test_a_push_that_changes_no_model_builds_and_publishes_nothing(clone: Path, s3: dict[str, str]) -> None:
    commit_change(clone, "docs/notes", {"NOTES.md": "How we train.\n"}, "notes")
    status, report, stderr = ci(clone, s3)
    assert status == 0, stderr
    assert report["selected"] == [] and report["models"] == []
    assert report["base_reason"] == "where docs/notes left heads/main"
    assert keys(s3, "staging") == [] and keys(s3, "production") == []


def test_a_failing_case_publishes_nothing_and_does_not_hide_the_other_model(
    clone: Path, s3: dict[str, str]
) -> None:
    git(clone, "checkout", "-q", "main")
    git(clone, "checkout", "-q", "-b", "feature/broken-churn")
    case_path = clone / "models" / "churn" / "tests" / "cases" / "customer_0.json"
    case = json.loads(case_path.read_text())
    probability = next(output for output in case["outputs"] if output["name"] == "PROBABILITY")
    probability["data"] = [value + 0.5 for value in probability["data"]]
    case_path.write_text(json.dumps(case, indent=2) + "\n")
    with (clone / "models" / "digits" / "postprocess" / "1" / "model.py").open("a") as stream:
        stream.write("\n\n# Top class per row.\n")
    git(clone, "commit", "-q", "-am", "churn: a wrong expectation; digits: a comment")
    commit = git(clone, "rev-parse", "HEAD")

    status, report, stderr = ci(clone, s3)
    assert status == 1, stderr
    assert report["selected"] == ["churn", "digits"]
    churn, digits = outcomes(report)["churn"], outcomes(report)["digits"]
    assert churn == {
        "weights": "passed",
        "gate": "failed",
        **dict.fromkeys(["build", "replay", "publish"], "skipped"),
    }
    assert digits["publish"] == "passed"
    assert keys(s3, "staging") == [f"feature-broken-churn/{commit[:12]}/digits_1.tar.gz"]
    junit = (clone / "dist" / "ci" / "junit.xml").read_text()
    assert '<testsuite name="churn" tests="5" failures="1" skipped="3"' in junit


def test_a_change_to_shared_code_affects_every_model_that_imports_it(clone: Path, s3: dict[str, str]) -> None:
    commit_change(
        clone, "feature/modelkit", {"libs/modelkit/onnx.py": "# One thread per instance.\n"}, "libs"
    )
    status, github, stderr = ci(clone, s3, "--matrix", "github")
    assert status == 0, stderr
    assert github == {"include": [{"model": "churn"}, {"model": "digits"}]}
    edit = {"models/digits/classifier/config.pbtxt": "# The ONNX classifier, run by model.py.\n"}
    commit_change(clone, "feature/digits", edit, "digits: a comment in its config")
    status, gitlab, stderr = ci(clone, s3, "--matrix", "gitlab")
    assert status == 0, stderr
    assert [name for name in gitlab if name.startswith("model:")] == ["model:digits"]
