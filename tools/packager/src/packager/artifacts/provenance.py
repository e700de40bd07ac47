"""Where an artifact comes from: git commits and branches, and who or what published it."""

from __future__ import annotations

import getpass
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    """The git state of a model directory."""

    commit: str  # the last commit that changed the directory ("" outside git)
    dirty: bool  # uncommitted changes under it


def _git(directory: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def model_source(directory: Path) -> Source:
    """The last commit touching `directory`, so unchanged models keep the same provenance (and bytes)."""
    commit = _git(directory, "log", "-1", "--format=%H", "--", ".") or ""
    status = _git(directory, "status", "--porcelain", "--", ".")
    return Source(commit, bool(status))


def head_commit(directory: Path) -> str | None:
    return _git(directory, "rev-parse", "HEAD")


def current_branch(directory: Path) -> str | None:
    branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD")
    return branch if branch and branch != "HEAD" else None


def branch_slug(branch: str) -> str:
    """A branch name made safe for an S3 key and a URL path segment: `feature/New Model` -> `feature-new-model`."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", branch.lower()).strip("-.")
    return re.sub(r"\.\.+", ".", slug) or "branch"


def actor() -> str:
    """Who publishes: the CI's user when there is one, else the local user."""
    for variable in ("PACKAGER_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILDKITE_BUILD_CREATOR"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def pipeline() -> str:
    """Which pipeline run publishes, when one does ("local" otherwise)."""
    if os.environ.get("PACKAGER_PIPELINE"):
        return os.environ["PACKAGER_PIPELINE"]
    if os.environ.get("GITHUB_RUN_ID"):
        return f"{os.environ.get('GITHUB_REPOSITORY', 'github')}/actions/runs/{os.environ['GITHUB_RUN_ID']}"
    return os.environ.get("CI_PIPELINE_URL") or os.environ.get("BUILDKITE_BUILD_URL") or "local"
