"""Release managers' moves in production: promote a tested staging artifact (server-side, no rebuild),
and roll a model back to an earlier published version. Both add to the release history."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packager.artifacts import Artifact, ArtifactError, artifact_name, branch_slug, verify_artifact
from packager.errors import UsageError
from packager.release.history import Entry, ReleaseError, current, history, new_entry, record
from packager.release.publishing import Destination, same_or_refuse
from packager.release.stores import AlreadyExists, ArtifactStore, Store
from packager.scratch import scratch_dir

COMMIT_PREFIX = re.compile(r"[0-9a-f]{7,40}")
CLEAN = re.compile(r"[0-9a-f]{12}")  # a staged commit; uncommitted builds carry a -dirty-<content> suffix


@dataclass(frozen=True)
class Promotion:
    """What promote did: the staged artifact it took, where production holds it, and the history entry it
    wrote (None: production already held that artifact, and it was current)."""

    source: Destination
    destination: Destination
    entry: Entry | None

    @property
    def outcome(self) -> Literal["promoted", "already current"]:
        return "promoted" if self.entry is not None else "already current"


def promote(
    staging: ArtifactStore,
    production: Store,
    *,
    model: str,
    version: int,
    from_commit: str,
    public_key: Path | None,
    branch: str | None = None,
) -> Promotion:
    """Copy the tested staging artifact of `from_commit` (a unique prefix of at least 7 hex digits; `branch`
    chooses when several branches staged it) into production, server-side, after verifying it, and make it
    current."""
    history(production, model)  # a history it could not record in refuses the promotion before any copy
    source_key = _staged_key(staging, artifact_name(model, version), from_commit.lower(), branch)
    staged = staging.head(source_key)
    if staged is None:
        raise ReleaseError(f"{staging.uri}/{source_key} vanished while promoting; try again")
    recorded = staged.metadata.get("sha256")
    artifact = _verified(
        staging,
        source_key,
        identity=(model, version),
        public_key=public_key,
        recorded=recorded,
        consequence="not promoted",
    )
    if artifact.manifest.get("source_dirty", True):
        raise ReleaseError(
            f"{source_key} was built from uncommitted sources (or from outside the repository); "
            "production takes committed sources only: commit, push the branch, promote that commit"
        )
    target = Destination(production, artifact_name(model, version), production=True)
    existing = production.head(target.key)
    if existing is None:
        try:
            production.copy_new(staging, source_key, key=target.key, metadata=dict(staged.metadata))
        except AlreadyExists:
            pass
        existing = production.head(target.key)
        if existing is None:
            raise ReleaseError(f"{target.uri} was copied, but reading it back found nothing; try again")
    same_or_refuse(existing, artifact, target)  # raises ImmutableKey for other bytes
    source = Destination(staging, source_key, production=False)
    now = current(production, model)
    if now is not None and now.version == version and now.key == target.key:
        return Promotion(source, target, None)
    commit = staged.metadata.get("commit", "")
    entry = new_entry(
        "promote",
        version,
        key=target.key,
        sha256=existing.metadata.get("sha256", artifact.sha256),
        commit=commit,
        note=f"from {source_key}",
    )
    record(production, model, entry)
    return Promotion(source, target, entry)


def _staged_key(staging: ArtifactStore, filename: str, prefix: str, branch: str | None) -> str:
    """The one staging key `<branch>/<commit12>/<filename>` whose commit starts with `prefix`."""
    if not COMMIT_PREFIX.fullmatch(prefix):
        raise UsageError(
            f"{prefix!r} is not a commit: give a commit hash or a unique prefix of 7+ hex digits"
        )
    listed = [key.split("/") for key in staging.keys(f"{branch_slug(branch)}/" if branch else "")]
    staged = [parts for parts in listed if len(parts) == 3 and parts[2] == filename]
    matches = [parts for parts in staged if parts[1].startswith(prefix[:12]) and CLEAN.fullmatch(parts[1])]
    if not matches:
        dirty = [parts for parts in staged if parts[1].startswith(prefix[:12])]
        reason = " (only uncommitted builds of it are staged, which are never promoted)" if dirty else ""
        where = f" on {branch}" if branch else ""
        raise ReleaseError(
            f"no {filename} from commit {prefix}{where} in {staging.uri}{reason}; push that commit's branch first"
        )
    commits = sorted({parts[1] for parts in matches})
    if len(commits) > 1:
        raise ReleaseError(
            f"commit prefix {prefix} is ambiguous in {staging.uri} ({', '.join(commits)}): give more digits"
        )
    if len(matches) > 1:
        branches = ", ".join(sorted(parts[0] for parts in matches))
        raise ReleaseError(
            f"{filename} of commit {commits[0]} is staged under several branches ({branches}): choose one with --branch"
        )
    return "/".join(matches[0])


def rollback(
    production: Store, model: str, *, to_version: int | None, public_key: Path | None = None
) -> Entry:
    """Point "current" back (to `to_version`, or to the version before the current one) after verifying that
    version as promote does (its recorded sha256, its files, its signature with a public key); history
    grows."""
    entries = history(production, model)
    if not entries:
        raise ReleaseError(f"{model} has no release history in {production.uri}")
    now = entries[-1]
    if to_version is None:
        earlier = [
            entry
            for entry in reversed(entries)
            if entry.version != now.version and entry.action != "rollback"
        ]
        if not earlier:
            raise ReleaseError(
                f"{model} has never been released at a version other than {now.version}: nothing to roll back to"
            )
        to_version = earlier[0].version
    if to_version == now.version:
        raise UsageError(f"{model} is already at version {to_version}")
    key = artifact_name(model, to_version)
    stored = production.head(key)
    if stored is None:
        raise ReleaseError(f"{production.uri}/{key} does not exist: {model} {to_version} was never published")
    known = next((entry for entry in reversed(entries) if entry.version == to_version), None)
    recorded = known.sha256 if known else stored.metadata.get("sha256")  # the history's, where it has one
    artifact = _verified(
        production,
        key,
        identity=(model, to_version),
        public_key=public_key,
        recorded=recorded,
        consequence="not rolled back",
    )
    commit = known.commit if known else stored.metadata.get("commit", "")
    entry = new_entry(
        "rollback",
        to_version,
        key=key,
        sha256=artifact.sha256,
        commit=commit,
        note=f"from version {now.version}",
    )
    record(production, model, entry)
    return entry


def _verified(
    store: ArtifactStore,
    key: str,
    *,
    identity: tuple[str, int],
    public_key: Path | None,
    recorded: str | None,
    consequence: str,
) -> Artifact:
    """The artifact at `key`, downloaded and verified like every release move: the sha256 `recorded` for
    it, every file against the manifest, the signature with a public key, and that it is `identity`'s
    model and version; ReleaseError (saying the `consequence`) if it is not."""
    with scratch_dir("release") as scratch:
        local = Path(scratch) / "artifact.tar.gz"
        store.download(key, local)
        try:
            artifact, problems = verify_artifact(local, public_key, recorded)
        except ArtifactError as error:  # not even a readable archive (a flipped bit in its compressed bytes)
            artifact, problems = None, [str(error).removeprefix(f"{local}: ")]
    if artifact is None or problems:
        raise ReleaseError(f"{store.uri}/{key} does not verify; {consequence}:\n  " + "\n  ".join(problems))
    if (artifact.name, artifact.version) != identity:
        raise ReleaseError(f"{key} holds {artifact.name} {artifact.version}, not {identity[0]} {identity[1]}")
    return artifact
