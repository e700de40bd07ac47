"""The store plug point: where artifacts are published and release documents kept.

Two narrow interfaces, because the two users need different things: artifacts are immutable objects
(create-if-absent, copy, head, download) and release documents are small files replaced only if unchanged
since read (conditional read/write). A store usually is both (`Store`). Every write is conditional: of
several concurrent writers of one key exactly one wins. Stores are chosen by URI scheme through the
registry `STORES`; a new backend is one module with a `from_uri` constructor and one registry line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from packager.errors import UsageError
from packager.registry import Registry
from packager.scratch import scratch_dir

# Any bucket S3 has ever allowed (legacy us-east-1 names included): 3 to 255 of these characters.
S3_BUCKET = re.compile(r"[A-Za-z0-9._-]{3,255}")


class AlreadyExists(Exception):
    """The key is taken (another pusher won, or it was published before)."""


class KeyOutsideStore(UsageError):
    """A key that resolves outside the store: a file store's link that leads out of its directory."""


class Conflict(Exception):
    """A document changed since it was read; read it again and retry."""


@dataclass(frozen=True)
class StoredObject:
    """What a store knows of an object without reading it."""

    key: str
    size: int
    etag: str
    metadata: dict[str, str]
    version: str = ""  # the store's id of this exact object, where it keeps versions of a key


@dataclass(frozen=True)
class Location:
    """Where a stored object physically is, so that a store of the same kind can copy it server-side:
    `scheme` is the store kind, `container` its bucket (or "" where there is none), `path` the full key."""

    scheme: str
    container: str
    path: str


class ArtifactStore(Protocol):
    """A flat key space of immutable artifacts."""

    uri: str

    def head(self, key: str) -> StoredObject | None:
        """The object at `key`, or None."""

    def put_new(self, key: str, source: Path, metadata: dict[str, str]) -> None:
        """Create `key` from a file; raise AlreadyExists if it exists. Never visible half-written."""

    def copy_new(self, source: ArtifactStore, source_key: str, *, key: str, metadata: dict[str, str]) -> None:
        """Create `key` from another store's object (server-side where `source.locate` allows it)."""

    def remove(self, stored: StoredObject) -> None:
        """Delete exactly the object `head` returned (its version, where the store keeps versions; else
        only while the key still holds it): never another writer's object."""

    def locate(self, key: str) -> Location:
        """Where the object at `key` is, for a server-side copy by a store of the same kind."""

    def download(self, key: str, destination: Path) -> None:
        """Write the object's bytes to `destination`."""

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under `prefix`."""

    def close(self) -> None:
        """Release the store's connections."""


class DocumentStore(Protocol):
    """Small documents replaced only if unchanged since read."""

    uri: str

    def read(self, key: str) -> tuple[bytes, str] | None:
        """A small document and its version tag, or None."""

    def write(self, key: str, data: bytes, if_match: str | None) -> None:
        """Replace a document only if its tag is still `if_match` (None: only if absent); else Conflict."""

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under `prefix`."""

    def close(self) -> None:
        """Release the store's connections."""


class Store(ArtifactStore, DocumentStore, Protocol):
    """A store of both: the production store holds artifacts and their release history."""


STORES: Registry[Callable[[str, Path | None], Store]] = Registry(
    "store",
    {
        "file": "packager.release.stores.file:FileStore.from_uri",
        "s3": "packager.release.stores.s3:S3Store.from_uri",
    },
)


def store_uri_problem(uri: str) -> str | None:
    """Why `uri` names no store (None when it names one): checked without opening it."""
    try:
        parsed = urlparse(uri)
    except ValueError as error:  # a bracketed host that is not an IPv6 address
        return str(error)
    if parsed.scheme not in STORES.names():
        return f"unknown scheme {parsed.scheme!r}" if parsed.scheme else "no scheme"
    if parsed.query or parsed.fragment or uri.endswith(("?", "#")):
        return "a ? or # has no place in it"
    if parsed.scheme == "s3" and not S3_BUCKET.fullmatch(parsed.netloc):
        return f"{parsed.netloc!r} is not an S3 bucket name" if parsed.netloc else "no bucket"
    if parsed.scheme == "file" and not (parsed.netloc or parsed.path):
        return "no directory"
    return None


def open_store(uri: str, root: Path | None) -> Store:
    """The store a URI names: s3://bucket/prefix, file:///absolute/dir, or file:dir (relative to `root`)."""
    problem = store_uri_problem(uri)
    if problem is not None:
        raise UsageError(f"{uri}: a store URI is s3://bucket/prefix or file:///dir ({problem})")
    return STORES.factory(urlparse(uri).scheme)(uri, root)


def copy_by_download(
    source: ArtifactStore, source_key: str, *, target: ArtifactStore, key: str, metadata: dict[str, str]
) -> None:
    """Create `key` in `target` from a local copy of `source`'s object (when no server-side copy applies)."""
    with scratch_dir("copy") as scratch:
        local = Path(scratch) / "object"
        source.download(source_key, local)
        target.put_new(key, local, metadata)
