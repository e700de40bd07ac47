"""The in-memory store: a fake with the real stores' contract (create-if-absent, conditional document
writes, one key space), for fast tests of publishing and release logic. Not reachable by URI: a store that
forgets everything when the process ends is never a configuration."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packager.release.stores.interface import (
    AlreadyExists,
    ArtifactStore,
    Conflict,
    Location,
    StoredObject,
    copy_by_download,
)


@dataclass
class _Object:
    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class MemoryStore:
    """Objects in a dict, guarded by a lock so that concurrent writers race as they would on S3."""

    def __init__(self, uri: str = "memory://store") -> None:
        self.uri = uri
        self._objects: dict[str, _Object] = {}
        self._lock = threading.Lock()

    def head(self, key: str) -> StoredObject | None:
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            return None
        return StoredObject(key, len(found.data), found.etag, dict(found.metadata))

    def put_new(self, key: str, source: Path, metadata: dict[str, str]) -> None:
        self._create(key, _Object(source.read_bytes(), dict(metadata)))

    def copy_new(self, source: ArtifactStore, source_key: str, *, key: str, metadata: dict[str, str]) -> None:
        copy_by_download(source, source_key, target=self, key=key, metadata=metadata)

    def _create(self, key: str, stored: _Object) -> None:
        with self._lock:
            if key in self._objects:
                raise AlreadyExists(key)
            self._objects[key] = stored

    def remove(self, stored: StoredObject) -> None:
        with self._lock:
            found = self._objects.get(stored.key)
            if found is not None and found.etag == stored.etag:
                del self._objects[stored.key]

    def locate(self, key: str) -> Location:
        return Location("memory", self.uri, key)

    def download(self, key: str, destination: Path) -> None:
        with self._lock:
            data = self._objects[key].data
        destination.write_bytes(data)

    def read(self, key: str) -> tuple[bytes, str] | None:
        with self._lock:
            found = self._objects.get(key)
        return (found.data, found.etag) if found is not None else None

    def write(self, key: str, data: bytes, if_match: str | None) -> None:
        with self._lock:
            found = self._objects.get(key)
            if (found.etag if found is not None else None) != if_match:
                raise Conflict(key)
            self._objects[key] = _Object(data)

    def keys(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            names = sorted(key for key in self._objects if key.startswith(prefix))
        yield from names

    def close(self) -> None:
        """Nothing to release."""
