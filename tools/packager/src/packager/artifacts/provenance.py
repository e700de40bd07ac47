"""Where an artifact comes from: git commits and branches, and who or what published it."""

from __future__ import annotations

import getpass
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Where CI systems say which branch and commit they build (GitHub Actions, GitLab CI, Buildkite).
CI_BRANCH_VARIABLES = (
    "GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "CI_COMMIT_BRANCH",
    "CI_COMMIT_REF_NAME", "BUILDKITE_BRANCH",
)  # fmt: skip
CI_COMMIT_VARIABLES = ("GITHUB_SHA", "CI_COMMIT_SHA", "BUILDKITE_COMMIT")


@dataclass(frozen=True)
class Source:
    """The git state of a model directory."""

    commit: str  # the last commit that changed the directory ("" outside git)
    dirty: bool  # uncommitted or untracked changes under it, or not in git at all
    repository: Path | None  # the git work tree it belongs to


def _git_run(
    directory: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", *args],
            cwd=directory,
            input=stdin,
            capture_output=True,
            text=True,
            errors="surrogateescape",
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _git(directory: Path, *args: str) -> str | None:
    result = _git_run(directory, *args)
    return result.stdout.strip() if result is not None and result.returncode == 0 else None


def model_source(directory: Path, repository: Path | None = None, also: Sequence[Path] = ()) -> Source:
    """The last commit touching `directory` (and the shared code in `also`), so unchanged models keep the
    same provenance (and bytes), and whether anything under them is not committed. A directory outside
    git, or outside the git work tree of `repository` (the monorepo), counts as dirty."""
    paths = [".", *(str(path.resolve()) for path in also)]
    top = _git(directory, "rev-parse", "--show-toplevel")
    commit = _git(directory, "log", "-1", "--format=%H", "--", *paths) or ""
    status = _git(directory, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    outside = repository is not None and top != _git(repository, "rev-parse", "--show-toplevel")
    dirty = status is None or bool(status) or not commit or outside
    return Source(commit, dirty, Path(top) if top else None)


def ignored_files(directory: Path, paths: Sequence[Path]) -> list[Path] | None:
    """Those of `paths` (absolute, in the work tree of `directory`) that git ignores and does not track;
    None when git cannot tell (outside a work tree)."""
    if not paths:
        return []
    result = _git_run(
        directory, "check-ignore", "-z", "--stdin", stdin="".join(f"{path}\0" for path in paths)
    )
    if result is None or result.returncode not in (0, 1):  # 1: none is ignored
        return None
    return [Path(name) for name in result.stdout.split("\0") if name]


def current_branch(directory: Path) -> str | None:
    branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD")
    return branch if branch and branch != "HEAD" else None


def ci_revision() -> tuple[str | None, str | None]:
    """The branch and commit the CI system says it builds, where one does."""
    branch = next((os.environ[name] for name in CI_BRANCH_VARIABLES if os.environ.get(name)), None)
    commit = next((os.environ[name] for name in CI_COMMIT_VARIABLES if os.environ.get(name)), None)
    return branch, commit


def full_commit(directory: Path, revision: str) -> str | None:
    """The full hash of a commit the repository holds, or None."""
    return _git(directory, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")


def branch_ref(directory: Path, branch: str) -> str | None:
    """The local or origin ref of `branch`, if the repository has one."""
    for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
        if _git(directory, "rev-parse", "--verify", "--quiet", ref):
            return ref
    return None


def is_ancestor(directory: Path, commit: str, ref: str) -> bool:
    """Whether `commit` is `ref` or an ancestor of it."""
    result = _git_run(directory, "merge-base", "--is-ancestor", commit, ref)
    return result is not None and result.returncode == 0


def merge_base(directory: Path, commit: str, ref: str) -> str | None:
    """The best common ancestor of `commit` and `ref`, if they have one."""
    return _git(directory, "merge-base", commit, ref)


def matches_commit(directory: Path, commit: str, also: Sequence[Path] = ()) -> bool:
    """Whether the files under `directory` (and `also`) are exactly what `commit` holds there."""
    result = _git_run(
        directory, "diff", "--quiet", commit, "--", ".", *(str(path.resolve()) for path in also)
    )
    return result is not None and result.returncode == 0


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
