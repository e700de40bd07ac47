"""Release managers' moves in production: promote a tested staging artifact (server-side, no rebuild),
and roll a model back to an earlier published version. Both add to the release history."""

from __future__ import annotations

import tempfile
from pathlib import Path

from packager.artifacts import artifact_name, load_artifact, verify_artifact
from packager.errors import UsageError
from packager.release.history import Entry, ReleaseError, history, new_entry, record
from packager.release.publishing import Destination, same_or_refuse
from packager.release.stores import AlreadyExists, ArtifactStore, Store


def promote(
    staging: ArtifactStore,
    production: Store,
    model: str,
    version: int,
    from_commit: str,
    public_key: Path | None,
) -> tuple[Entry | None, str]:
    """Copy the tested staging artifact of `from_commit` into production, server-side, after verifying it.

    Returns the history entry written (None when production already held this exact artifact) and the
    staging key promoted.
    """
    filename = artifact_name(model, version)
    suffix = f"/{from_commit[:12]}/{filename}"
    matches = [key for key in staging.keys() if key.endswith(suffix)]
    if not matches:
        raise ReleaseError(
            f"no {filename} from commit {from_commit[:12]} in {staging.uri}; push that commit's branch first"
        )
    if len(matches) > 1:
        raise ReleaseError(
            f"{filename} of commit {from_commit[:12]} is staged under several branches: {', '.join(matches)}"
        )
    source_key = matches[0]
    staged = staging.head(source_key)
    assert staged is not None
    with tempfile.TemporaryDirectory(prefix="packager-promote-") as scratch:
        local = Path(scratch) / filename
        staging.download(source_key, local)
        artifact = load_artifact(local)
        problems = verify_artifact(artifact, public_key, expected_sha256=staged.metadata.get("sha256"))
        if problems:
            raise ReleaseError(
                f"{staging.uri}/{source_key} does not verify; not promoted:\n  " + "\n  ".join(problems)
            )
    if (artifact.name, artifact.version) != (model, version):
        raise ReleaseError(f"{source_key} holds {artifact.name} {artifact.version}, not {model} {version}")
    target = Destination(production, filename, production=True)
    existing = production.head(filename)
    if existing is None:
        try:
            production.copy_new(staging, source_key, filename, dict(staged.metadata))
        except AlreadyExists:
            existing = production.head(filename)
    if existing is not None:
        same_or_refuse(existing, artifact, target)  # raises ImmutableKey for other bytes
        return None, source_key
    entry = new_entry(
        "promote",
        version,
        filename,
        artifact.sha256,
        staged.metadata.get("commit", from_commit),
        f"from {source_key}",
    )
    record(production, model, entry)
    return entry, source_key


def rollback(production: Store, model: str, to_version: int | None) -> Entry:
    """Point "current" back (to `to_version`, or to the version before the current one); history grows."""
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
    commit = known.commit if known else stored.metadata.get("commit", "")
    entry = new_entry(
        "rollback", to_version, key, stored.metadata.get("sha256", ""), commit, f"from version {now.version}"
    )
    record(production, model, entry)
    return entry
