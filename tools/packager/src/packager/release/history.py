"""Release history and the "current" pointer of each model in the production store.

`_releases/<model>/history.json` is append-only: every publish, promote and rollback adds an entry (version,
sha256, commit, time, actor, pipeline) and none is ever rewritten. `_releases/<model>/current.json` names
the version serving now; it always equals the newest entry. Both are updated with conditional writes on
their version tag, so concurrent release managers cannot lose each other's entries.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from packager.artifacts import artifact_name, load_artifact, verify_artifact
from packager.errors import PackagerError, UsageError
from packager.provenance import actor, pipeline
from packager.publishing import Destination, same_or_refuse
from packager.stores import AlreadyExists, Conflict, Store

RELEASES = "_releases"
ATTEMPTS = 20


class ReleaseError(PackagerError):
    """A promote or rollback that cannot be done as asked."""


@dataclass(frozen=True)
class Entry:
    """One line of a model's release history."""

    action: str  # "publish", "promote" or "rollback"
    version: int
    key: str
    sha256: str
    commit: str
    time: str
    actor: str
    pipeline: str
    note: str = ""


def new_entry(action: str, version: int, key: str, sha256: str, commit: str, note: str = "") -> Entry:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Entry(action, version, key, sha256, commit, now, actor(), pipeline(), note)


def history(store: Store, model: str) -> list[Entry]:
    found = store.read(f"{RELEASES}/{model}/history.json")
    return [Entry(**item) for item in json.loads(found[0])["entries"]] if found else []


def record(store: Store, model: str, entry: Entry) -> None:
    """Append `entry` to the model's history, then point "current" at its version (retrying on races)."""
    _update(
        store,
        f"{RELEASES}/{model}/history.json",
        lambda old: {"model": model, "entries": [*old.get("entries", []), asdict(entry)]},
    )
    pointer = {
        "model": model,
        "version": entry.version,
        "key": entry.key,
        "sha256": entry.sha256,
        "since": entry.time,
    }
    _update(store, f"{RELEASES}/{model}/current.json", lambda old: pointer)


def _update(store: Store, key: str, change: Any) -> None:
    for _ in range(ATTEMPTS):
        found = store.read(key)
        old = json.loads(found[0]) if found else {}
        try:
            store.write(key, (json.dumps(change(old), indent=2) + "\n").encode(), found[1] if found else None)
            return
        except Conflict:
            continue  # somebody else wrote in between: read their version and apply ours on top
    raise ReleaseError(f"{store.uri}: {key} kept changing under {ATTEMPTS} attempts; try again")


def current(store: Store, model: str) -> Entry | None:
    entries = history(store, model)
    return entries[-1] if entries else None


def released_models(store: Store) -> list[str]:
    pattern = re.compile(rf"^{RELEASES}/([^/]+)/history\.json$")
    return sorted(match.group(1) for key in store.keys(f"{RELEASES}/") if (match := pattern.match(key)))


def promote(
    staging: Store, production: Store, model: str, version: int, from_commit: str, public_key: Path | None
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
