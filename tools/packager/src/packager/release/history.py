"""Release history and the "current" pointer of each model in the production store.

`_releases/<model>/history.json` is append-only: every publish, promote and rollback adds an entry (version,
sha256, commit, time, actor, pipeline) and none is ever rewritten. `_releases/<model>/current.json` names
the version serving now; it always equals the newest entry. Both are updated with conditional writes on
their version tag, so concurrent release managers cannot lose each other's entries.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from packager.artifacts import actor, pipeline
from packager.errors import PackagerError
from packager.release.stores import Conflict, DocumentStore

RELEASES = "_releases"
ATTEMPTS = 20


class ReleaseError(PackagerError):
    """A release operation that cannot be done as asked."""


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
    """An entry stamped now, with who and which pipeline makes it."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Entry(action, version, key, sha256, commit, now, actor(), pipeline(), note)


def history(store: DocumentStore, model: str) -> list[Entry]:
    """The model's release history, oldest first (empty if it was never released)."""
    found = store.read(f"{RELEASES}/{model}/history.json")
    return [Entry(**item) for item in json.loads(found[0])["entries"]] if found else []


def record(store: DocumentStore, model: str, entry: Entry) -> None:
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


def _update(store: DocumentStore, key: str, change: Any) -> None:
    for _ in range(ATTEMPTS):
        found = store.read(key)
        old = json.loads(found[0]) if found else {}
        try:
            store.write(key, (json.dumps(change(old), indent=2) + "\n").encode(), found[1] if found else None)
            return
        except Conflict:
            continue  # somebody else wrote in between: read their version and apply ours on top
    raise ReleaseError(f"{store.uri}: {key} kept changing under {ATTEMPTS} attempts; try again")


def current(store: DocumentStore, model: str) -> Entry | None:
    """The newest history entry: the version serving now."""
    entries = history(store, model)
    return entries[-1] if entries else None


def released_models(store: DocumentStore) -> list[str]:
    """Every model with a release history in the store, sorted."""
    pattern = re.compile(rf"^{RELEASES}/([^/]+)/history\.json$")
    return sorted(match.group(1) for key in store.keys(f"{RELEASES}/") if (match := pattern.match(key)))
