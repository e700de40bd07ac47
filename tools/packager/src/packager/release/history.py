"""Release history and the "current" pointer of each model in the production store.

`_releases/<model>/history.json` is append-only: every publish, promote and rollback adds an entry (version,
sha256, commit, time, actor, pipeline) and none is ever rewritten. `_releases/<model>/current.json` names
the version serving now: it is derived from the newest entry (which `current()` reads), rewritten after
every entry. Both are updated with conditional writes on
their version tag, so concurrent release managers cannot lose each other's entries.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable

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


def record(store: DocumentStore, model: str, entry: Entry, unless_known: bool = False) -> bool:
    """Append `entry` to the model's history, then point "current" at the history's newest entry (both
    retried on races); whether it was appended. `unless_known` appends only if no entry names the same
    version and key yet: a publish whose record an earlier run failed to write is repaired by the next."""

    def append(old: dict[str, Any]) -> dict[str, Any] | None:
        entries = old.get("entries", [])
        if unless_known and any(
            item["version"] == entry.version and item["key"] == entry.key for item in entries
        ):
            return None
        return {"model": model, "entries": [*entries, asdict(entry)]}

    appended = _update(store, f"{RELEASES}/{model}/history.json", append)
    _update(store, f"{RELEASES}/{model}/current.json", lambda old: _pointer(model, history(store, model)[-1]))
    return appended


def _pointer(model: str, newest: Entry) -> dict[str, Any]:
    return {
        "model": model,
        "version": newest.version,
        "key": newest.key,
        "sha256": newest.sha256,
        "since": newest.time,
    }


def _update(
    store: DocumentStore, key: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> bool:
    """Rewrite a document from its current content (`change` returns None for no change); whether it did."""
    for _ in range(ATTEMPTS):
        found = store.read(key)
        old = json.loads(found[0]) if found else {}
        new = change(old)
        if new is None or new == old:
            return False
        try:
            store.write(key, (json.dumps(new, indent=2) + "\n").encode(), found[1] if found else None)
            return True
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
