"""What a `packager ci` run reports: a terminal table, Markdown for a CI job summary, JUnit XML (a suite
per model, a case per step), and the affected models as a job matrix for GitHub Actions or GitLab CI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

from packager.ci.pipeline import STEPS, CiRun
from packager.errors import Outcome
from packager.tables import markdown_table, plural, table

MATRIX_SYSTEMS = ("github", "gitlab")
# The GitLab child pipeline `--matrix gitlab` writes: two jobs per model, extending these hidden jobs of this
# file in the repository (.gitlab-ci.yml's example ships it): one tests the model with no publishing
# credentials, the other, once that one passed, publishes it in its environment.
GITLAB_TEMPLATE = ".gitlab/packager-model.yml"
GITLAB_JOB = ".packager-model"
GITLAB_PUBLISH_JOB = ".packager-publish"
# Where both get the packager and DVC PEXes: the parent pipeline's job that wrote the child pipeline.
GITLAB_PEXES = {"pipeline": "$PARENT_PIPELINE_ID", "job": "affected"}
SYMBOLS = {Outcome.PASSED: "ok", Outcome.FAILED: "FAILED", Outcome.SKIPPED: "-"}


def headline(run: CiRun) -> str:
    """`1 of 30 models affected since 1a2b3c4d5e6f (where feature/x left heads/main): churn`, and the like."""
    names = ": " + ", ".join(run.selected) if run.selected else ""
    if run.selection != "affected" or run.base is None:
        return f"{len(run.selected)} of {plural(run.considered, 'model')} ({run.selection}){names}"
    since = f"since {run.base.commit[:12]} ({run.base.reason})" if run.base.commit else f"({run.base.reason})"
    return f"{len(run.selected)} of {plural(run.considered, 'model')} affected {since}{names}"


def _rows(run: CiRun) -> list[list[str]]:
    rows = []
    for model in run.runs:
        failed = next((step for step in model.steps if step.outcome == Outcome.FAILED), None)
        publish = model.step("publish")
        where = (failed.detail.splitlines() or [""])[0] if failed else publish.detail
        version = str(model.push.artifact.version) if model.push and model.push.artifact else "-"
        steps = [SYMBOLS[model.step(name).outcome] for name in STEPS]
        rows.append([model.model, version, *steps, where])
    return rows


HEADER = ["model", "version", *STEPS, "result"]


def ci_table(run: CiRun) -> str:
    """One row per model: its version, each step's outcome, and where it was published or what failed."""
    return table(_rows(run), HEADER)


def failure_details(run: CiRun) -> list[tuple[str, str]]:
    """(model and step, full detail) for every failed step."""
    return [
        (f"{model.model}: {step.name}", step.detail)
        for model in run.runs
        for step in model.steps
        if step.outcome == Outcome.FAILED
    ]


def markdown(run: CiRun) -> str:
    """A job summary: the revision, which models and why, the table, and each failure in full."""
    lines = [
        f"### packager ci: `{run.revision.branch}` at `{run.revision.commit[:12]}`",
        "",
        headline(run),
        "",
    ]
    if run.runs:
        lines += [markdown_table(_rows(run), HEADER), ""]
    for title, detail in failure_details(run):
        lines += [f"<details><summary>{title}</summary>", "", "```", detail, "```", "</details>", ""]
    return "\n".join(lines)


def write_ci_junit(run: CiRun, path: Path) -> None:
    """JUnit XML: a testsuite per model, a testcase per step (failed, skipped or passed)."""
    suites = ElementTree.Element("testsuites", name="packager ci")
    for model in run.runs:
        steps = [model.step(name) for name in STEPS]
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=model.model,
            tests=str(len(steps)),
            failures=str(sum(step.outcome == Outcome.FAILED for step in steps)),
            skipped=str(sum(step.outcome == Outcome.SKIPPED for step in steps)),
            errors="0",
            time=f"{sum(step.seconds for step in steps):.3f}",
        )
        properties = ElementTree.SubElement(suite, "properties")
        for name, value in (("branch", run.revision.branch), ("commit", run.revision.commit)):
            ElementTree.SubElement(properties, "property", name=name, value=value)
        for step in steps:
            case = ElementTree.SubElement(
                suite, "testcase", classname=f"ci.{model.model}", name=step.name, time=f"{step.seconds:.3f}"
            )
            if step.outcome == Outcome.FAILED:
                first = (step.detail.splitlines() or [""])[0]
                ElementTree.SubElement(case, "failure", message=first).text = step.detail
            elif step.outcome == Outcome.SKIPPED:
                ElementTree.SubElement(case, "skipped", message="an earlier step failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def matrix(models: Sequence[str], system: str) -> str:
    """The models as CI jobs: GitHub's `strategy.matrix` (`{"include": [{"model": ...}]}`), or a GitLab
    child pipeline (JSON, which is YAML) with, per model, `model:<name>` extending GITLAB_JOB and
    `publish:<name>` extending GITLAB_PUBLISH_JOB, which needs it (and, as the template's jobs do, the
    PEXes of GITLAB_PEXES)."""
    if system == "github":
        return json.dumps({"include": [{"model": name} for name in models]}, separators=(",", ":"))
    jobs: dict[str, object] = {}
    for name in models:
        variables = {"PACKAGER_MODEL": name}
        jobs[f"model:{name}"] = {"extends": GITLAB_JOB, "variables": variables}
        needs = [GITLAB_PEXES, {"job": f"model:{name}", "artifacts": False}]
        jobs[f"publish:{name}"] = {"extends": GITLAB_PUBLISH_JOB, "needs": needs, "variables": variables}
    if not jobs:  # a child pipeline needs a job: say that nothing is to be done
        jobs["nothing-affected"] = {"script": ["echo 'no model changed: nothing to build or publish'"]}
    else:
        jobs = {"include": [{"local": GITLAB_TEMPLATE}], **jobs}
    return json.dumps(jobs, indent=2)
