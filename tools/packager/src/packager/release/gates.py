"""The gates between a built artifact and a store: which revision a push is, and what may be published
where. Production takes only committed sources on a production branch, signed when a public key is
configured; staging takes anything tested, with uncommitted work marked in its key so that it can never
be promoted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packager.artifacts import (
    Artifact,
    branch_ref,
    ci_revision,
    current_branch,
    full_commit,
    is_ancestor,
    matches_commit,
    verify_artifact,
)
from packager.errors import PackagerError, UsageError


class SourceRefused(PackagerError):
    """The sources or revision being pushed may not go where the branch publishes."""


@dataclass(frozen=True)
class Revision:
    """What a push publishes as: a branch, and a full commit hash the repository holds."""

    branch: str
    commit: str


def resolve_revision(
    root: Path, *, branch: str | None, commit: str | None, production_branches: tuple[str, ...]
) -> Revision:
    """The branch and commit from the flags, else the CI system's variables, else git; the commit must
    exist, and a production branch must hold it."""
    ci_branch, ci_commit = ci_revision()
    branch = branch or ci_branch or current_branch(root)
    if not branch:
        raise UsageError("which branch is this? HEAD is detached and no CI variable names one: give --branch")
    given = commit or ci_commit or "HEAD"
    full = full_commit(root, given)
    if full is None:
        raise UsageError(f"commit {given!r} is not in the repository at {root}")
    if branch in production_branches:
        ref = branch_ref(root, branch)
        if ref is None:
            raise SourceRefused(
                f"cannot confirm that {full[:12]} is on {branch}: the repository has neither {branch} nor "
                f"origin/{branch}; fetch it (`git fetch origin {branch}`)"
            )
        if not is_ancestor(root, full, ref):
            raise SourceRefused(f"{full[:12]} is not on {branch} ({ref}); production publishes what is on it")
    return Revision(branch, full)


def check_publishable(
    artifact: Artifact,
    model_path: Path,
    *,
    revision: Revision,
    production: bool,
    public_key: Path | None,
    shared: Sequence[Path] = (),
) -> None:
    """Refuse what `revision` may not publish: to production, dirty sources, an environment that leans on
    this machine's Python, or (with a public key) an artifact whose signature does not verify; anywhere,
    sources the commit does not hold (the model directory's, and the `shared` libraries it packs)."""
    dirty = bool(artifact.manifest["source_dirty"])
    if production and artifact.manifest.get("env_portable") is False:
        raise SourceRefused(
            f"{model_path}: its environment is a venv, which leans on this machine's Python; a production "
            'endpoint runs its own: build it with env_builder = "conda" (a self-contained environment)'
        )
    ignored = artifact.manifest.get("source_ignored") or []
    if production and ignored:
        raise SourceRefused(
            f"{model_path}: its artifact would ship {', '.join(ignored)}, which git ignores and no DVC pointer "
            "stands for; production publishes committed sources only: commit it (`git add -f`), track it "
            "with DVC (`dvc add`), or remove it, then push"
        )
    if production and dirty:
        raise SourceRefused(
            f"{model_path} (or the shared code it packs from libs/) has uncommitted or untracked changes, "
            "or lies outside the repository; "
            "production publishes committed sources only: commit, then push"
        )
    if not dirty and not matches_commit(model_path, revision.commit, shared):
        raise SourceRefused(
            f"{model_path} differs from commit {revision.commit[:12]}: that commit does not hold the sources "
            "being built; push from a checkout of it, or without --commit"
        )
    if production and public_key is not None:
        _, problems = verify_artifact(artifact.path, public_key)
        if problems:
            raise SourceRefused(
                f"production needs an artifact signed for {public_key} (give --sign-key or set "
                f"PACKAGER_SIGNING_KEY): " + "; ".join(problems)
            )
