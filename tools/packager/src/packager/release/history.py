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
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
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


ENTRY_FIELDS = tuple(field.name for field in fields(Entry))


class OtherBytes(ReleaseError):
    """The history already binds the key to other bytes: `recorded` is the entry that did."""

    def __init__(self, recorded: Entry) -> None:
        super().__init__(
            f"the release history records {recorded.key} as sha256 {recorded.sha256[:12]} (commit "
            f"{recorded.commit[:12]}, {recorded.action} by {recorded.actor} at {recorded.time}); "
            "a key's bytes never change"
        )
        self.recorded = recorded


def new_entry(action: str, version: int, *, key: str, sha256: str, commit: str, note: str = "") -> Entry:
    """An entry stamped now, with who and which pipeline makes it."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return Entry(action, version, key, sha256, commit, now, actor(), pipeline(), note)


def history(store: DocumentStore, model: str) -> list[Entry]:
    """The model's release history, oldest first (empty if it was never released); ReleaseError for a
    document the packager did not write (invalid JSON, truncated, another shape)."""
    key = _history_key(model)
    found = store.read(key)
    return [Entry(**item) for item in _history_document(store, key, found[0])["entries"]] if found else []


def _history_key(model: str) -> str:
    return f"{RELEASES}/{model}/history.json"


def _history_document(store: DocumentStore, key: str, data: bytes) -> dict[str, Any]:
    """history.json's document, checked to be one the packager wrote: never rewritten if it is not."""
    try:
        document = json.loads(data)
    except ValueError as error:  # invalid or truncated JSON, or not UTF-8
        line = f":{error.lineno}:{error.colno}" if isinstance(error, json.JSONDecodeError) else ""
        raise _unreadable(store, key + line, f"not JSON ({getattr(error, 'msg', error)})") from None
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        raise _unreadable(store, key, 'not {"model": ..., "entries": [...]}')
    for number, item in enumerate(document["entries"], start=1):
        if not isinstance(item, dict) or not _is_entry(item):
            raise _unreadable(store, key, f"entry {number} is not an entry ({', '.join(ENTRY_FIELDS)})")
    return document


def _is_entry(item: dict[str, Any]) -> bool:
    """Whether a parsed history item has every field of an Entry (`note` may be missing), of its type."""
    if set(item) - set(ENTRY_FIELDS) or set(ENTRY_FIELDS) - set(item) - {"note"}:
        return False
    return all(
        (
            isinstance(value, int) and not isinstance(value, bool)
            if name == "version"
            else isinstance(value, str)
        )
        for name, value in item.items()
    )


def _unreadable(store: DocumentStore, where: str, problem: str) -> ReleaseError:
    return ReleaseError(
        f"{store.uri.rstrip('/')}/{where}: {problem}: not a release history the packager can read; "
        "restore it from a backup (or an earlier version of the object, where the store keeps versions) "
        "and run again"
    )


def record(store: DocumentStore, model: str, entry: Entry, *, unless_known: bool = False) -> bool:
    """Append `entry` to the model's history, then point "current" at the history's newest entry (both
    retried on races); whether it was appended. The history binds a key to one sha256: an entry naming
    other bytes under a recorded key is refused (OtherBytes), which makes the first to record a key win.
    `unless_known` appends only if no entry names the key yet: a publish whose record an earlier run
    failed to write is repaired by the next."""

    def append(old: dict[str, Any]) -> dict[str, Any] | None:
        entries = old.get("entries", [])
        recorded = [Entry(**item) for item in entries if item["key"] == entry.key]
        other = next((item for item in recorded if item.sha256 != entry.sha256), None)
        if other is not None:
            raise OtherBytes(other)
        if unless_known and recorded:
            return None
        return {"model": model, "entries": [*entries, asdict(entry)]}

    def newest(old: dict[str, Any]) -> dict[str, Any]:
        return _pointer(model, history(store, model)[-1])

    key = _history_key(model)
    appended = _update(store, key, append, lambda data: _history_document(store, key, data))
    _update(store, f"{RELEASES}/{model}/current.json", newest, _derived)
    return appended


def _pointer(model: str, newest: Entry) -> dict[str, Any]:
    return {
        "model": model,
        "version": newest.version,
        "key": newest.key,
        "sha256": newest.sha256,
        "since": newest.time,
    }


def _derived(data: bytes) -> Any:
    """A derived document (current.json) as read, or None where it is unreadable: it is rewritten anyway."""
    try:
        return json.loads(data)
    except ValueError:
        return None


def _update(
    store: DocumentStore,
    key: str,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
    parse: Callable[[bytes], Any],
) -> bool:
    """Rewrite a document from its current content (`change` returns None for no change); whether it did."""
    for _ in range(ATTEMPTS):
        found = store.read(key)
        old = parse(found[0]) if found else {}
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
