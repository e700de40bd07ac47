"""The file store: a directory on a local or shared disk (`file:///dir`, or `file:dir` relative to the
repository). An artifact appears by an atomic hard link, which fails if the key exists; documents are
replaced under a lock."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from packager.archives import file_digest
from packager.partials import PUBLISHED_MODE, partial_file
from packager.release.stores.interface import (
    AlreadyExists,
    ArtifactStore,
    Conflict,
    KeyOutsideStore,
    Location,
    StoredObject,
)


class FileStore:
    """A directory: objects are files, metadata sits beside them in `<key>.meta.json`."""

    def __init__(self, uri: str, directory: Path) -> None:
        self.uri = uri
        self.directory = directory

    @classmethod
    def from_uri(cls, uri: str, root: Path | None) -> FileStore:
        """`file:///absolute/dir`, or `file:dir` relative to `root` (the cwd without one)."""
        parsed = urlparse(uri)
        path = Path(parsed.path if parsed.netloc in ("", "localhost") else parsed.netloc + parsed.path)
        return cls(uri, path if path.is_absolute() else (root or Path.cwd()) / path)

    def _path(self, key: str) -> Path:
        """The file of `key`, refused when it resolves outside the directory (`..`, an absolute path, a link
        that leads out), whether or not anything is there."""
        path = self.directory / key
        if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(self.directory)):
            raise KeyOutsideStore(f"{key} resolves outside {self.uri}")
        return path

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            if not path.is_file():
                return None
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:  # no file can have that name
                return None
            raise
        meta = path.with_name(path.name + ".meta.json")
        metadata = json.loads(meta.read_text()) if meta.is_file() else {"sha256": file_digest(path)}
        return StoredObject(key, path.stat().st_size, metadata.get("sha256", ""), metadata)

    def put_new(self, key: str, source: Path, metadata: dict[str, str]) -> None:
        with partial_file(self._path(key)) as partial:
            shutil.copyfile(source, partial)
            self._link_new(key, partial, metadata)

    def copy_new(self, source: ArtifactStore, source_key: str, *, key: str, metadata: dict[str, str]) -> None:
        with partial_file(self._path(key)) as partial:
            source.download(source_key, partial)
            self._link_new(key, partial, metadata)

    def _link_new(self, key: str, partial: Path, metadata: dict[str, str]) -> None:
        path = self._path(key)
        meta = path.with_name(path.name + ".meta.json")
        partial.chmod(PUBLISHED_MODE)  # a download may have replaced the partial's inode
        with partial_file(meta) as meta_partial:
            meta_partial.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
            try:
                os.link(partial, path)  # atomic, and fails if the key exists: exactly one writer wins
            except FileExistsError:
                raise AlreadyExists(key) from None
            os.replace(meta_partial, meta)

    def remove(self, stored: StoredObject) -> None:
        """Never needed in a race (a hard link is an atomic create), but part of the contract."""
        path = self._path(stored.key)
        found = self.head(stored.key)
        if found is not None and found.etag == stored.etag:
            path.unlink()
            path.with_name(path.name + ".meta.json").unlink(missing_ok=True)

    def locate(self, key: str) -> Location:
        return Location("file", "", str(self._path(key)))

    def download(self, key: str, destination: Path) -> None:
        shutil.copyfile(self._path(key), destination)

    def read(self, key: str) -> tuple[bytes, str] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        data = path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def write(self, key: str, data: bytes, if_match: str | None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read(key)
            if (current[1] if current else None) != if_match:
                raise Conflict(key)
            with partial_file(path) as partial:
                partial.write_bytes(data)
                os.replace(partial, path)

    def keys(self, prefix: str = "") -> Iterator[str]:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.rglob("*")):
            key = path.relative_to(self.directory).as_posix()
            if (
                path.is_file()
                and key.startswith(prefix)
                and not path.name.endswith((".meta.json", ".lock", ".partial"))
            ):
                yield key

    def close(self) -> None:
        """Nothing to release: a directory holds no connections."""
