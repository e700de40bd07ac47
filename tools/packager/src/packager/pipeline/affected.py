"""Which models a push affects: what changed since a base commit, and what depends on it, from the Pants
graph. A model is affected when a target under its directory changed or depends (transitively) on one
that did: its config, steps, cases, requirements or lock, `model_version.txt`, a weight's `.dvc` pointer,
or shared code under libs/ that its steps import."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from packager.artifacts import branch_ref, full_commit, merge_base
from packager.errors import EnvironmentFailure, UsageError
from packager.modeldir import ModelDir
from packager.release import Revision
from packager.subprocesses import SHOWN_LINES, ToolFailure, credential_free

PANTS_COMMAND_VARIABLE = "PACKAGER_PANTS"
# Besides credential_free's: how Pants and the models' tests are configured (the [test] extra_env_vars of
# pants.toml pass some on to the tests), and the container engine the replays may use.
PANTS_PREFIXES = ("PANTS_",)
PANTS_VARIABLES = (
    "PACKAGER_CACHE", "PACKAGER_CONDA_CHANNELS", "DOCKER_HOST", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF",
)  # fmt: skip
# Variables a process started by `pants run` inherits from the Pants client.
PANTS_RUN_MARKERS = ("__PANTS_BIN_NAME", "PANTSD_RUNTRACKER_CLIENT_START_TIME")
NULL_COMMIT = "0" * 40  # what GitLab and GitHub say "before" is on a branch's first push
FETCH_HINT = (
    "fetch the history CI compares against (GitHub: actions/checkout with fetch-depth: 0; GitLab: "
    "GIT_DEPTH: 0), or give --since"
)


@dataclass(frozen=True)
class Base:
    """The commit a push is compared with, and why that one (None: no earlier commit, every model)."""

    commit: str | None
    reason: str


def pants_command(root: Path) -> list[str]:
    """How to run Pants: PACKAGER_PANTS (a command line), else the repository's ./pants, else `pants`.
    Under `pants run` it adds --concurrent: pantsd serves one invocation at a time, and the one that
    started the packager lasts until it ends."""
    configured = os.environ.get(PANTS_COMMAND_VARIABLE)
    if configured:
        command = shlex.split(configured)
    elif (root / "pants").is_file():
        command = [str(root / "pants")]
    elif shutil.which("pants"):
        command = ["pants"]
    else:
        raise EnvironmentFailure(
            f"Pants is neither {root / 'pants'} nor on PATH: install it, or set {PANTS_COMMAND_VARIABLE}"
        )
    return [*command, "--concurrent"] if any(name in os.environ for name in PANTS_RUN_MARKERS) else command


def pants_environment(environment: dict[str, str]) -> dict[str, str]:
    """What Pants may see of `environment`: no credentials or signing key (the gate runs the models'
    tests, their authors' code), no PYTHONPATH of ours; its own configuration and the container engine."""
    kept = credential_free(environment)
    kept.update(
        (name, value)
        for name, value in environment.items()
        if name in PANTS_VARIABLES or name.startswith(PANTS_PREFIXES)
    )
    return kept


def base_for(
    root: Path, revision: Revision, *, production_branches: tuple[str, ...], since: str | None
) -> Base:
    """What `revision` is compared with: --since; else for a branch that does not publish to production,
    where it left a production branch (so each push stages every model the branch changed); else the
    previous tip the CI system reports; else the commit's first parent."""
    if since is not None:
        return Base(_commit(root, since, "--since"), f"--since {since}")
    if revision.branch not in production_branches:
        for branch in production_branches:
            ref = branch_ref(root, branch)
            common = merge_base(root, revision.commit, ref) if ref is not None else None
            if ref is not None and common is not None:
                return Base(common, f"where {revision.branch} left {ref.removeprefix('refs/')}")
    before = _ci_previous_tip()
    if before is not None:
        return Base(_commit(root, before, "the CI system's previous tip"), "the CI system's previous tip")
    parent = full_commit(root, f"{revision.commit}^")
    if parent is not None:
        return Base(parent, f"the parent of {revision.commit[:12]}")
    return Base(None, f"{revision.commit[:12]} has no parent")


def affected_models(root: Path, models: list[ModelDir], *, base: Base, pants: list[str]) -> list[ModelDir]:
    """The models of `models` whose targets changed since `base`, or depend on a change (all of them when
    there is no base)."""
    if base.commit is None:
        return models
    command = [*pants, f"--changed-since={base.commit}", "--changed-dependents=transitive", "list"]
    try:
        result = subprocess.run(
            command, cwd=root, capture_output=True, text=True, env=pants_environment(dict(os.environ))
        )
    except OSError as error:
        raise EnvironmentFailure(f"cannot run Pants ({shlex.join(command)}): {error}") from error
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-SHOWN_LINES:])
        raise ToolFailure(
            f"`{shlex.join(command)}` failed (exit {result.returncode}):\n{tail}", result.stderr
        )
    paths = {_address_path(line) for line in result.stdout.splitlines() if line.strip()}
    return [model for model in models if any(_under(path, _relative(model.path, root)) for path in paths)]


def _address_path(address: str) -> str:
    """The file or directory a Pants address names: `models/a/x.py:../steps` -> `models/a/x.py`,
    `models/a:train` -> `models/a`, `//pants.toml:bootstrap` -> `pants.toml`, `3rdparty:reqs#numpy` -> `3rdparty`.
    """
    return address.strip().removeprefix("//").split(":", 1)[0].split("#", 1)[0]


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/")


def _relative(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def _commit(root: Path, given: str, what: str) -> str:
    full = full_commit(root, given)
    if full is None:
        raise UsageError(f"{what} names {given!r}, which this clone does not hold: {FETCH_HINT}")
    return full


def _ci_previous_tip() -> str | None:
    """The commit a CI push event says the branch was at before (GitLab's CI_COMMIT_BEFORE_SHA; GitHub's
    push event `before`, or a pull request's base), unless it is a branch's first push."""
    candidates = [os.environ.get("CI_MERGE_REQUEST_DIFF_BASE_SHA"), os.environ.get("CI_COMMIT_BEFORE_SHA")]
    event_path = os.environ.get("GITHUB_EVENT_PATH")
    if event_path and Path(event_path).is_file():
        try:
            event = json.loads(Path(event_path).read_text())
        except (OSError, ValueError):
            event = {}
        pull_request = event.get("pull_request") if isinstance(event, dict) else None
        if isinstance(pull_request, dict):
            candidates.append(pull_request.get("base", {}).get("sha"))
        if isinstance(event, dict):
            candidates.append(event.get("before"))
    return next((sha for sha in candidates if isinstance(sha, str) and sha and sha != NULL_COMMIT), None)
