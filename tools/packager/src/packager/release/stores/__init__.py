"""Stores: where artifacts are published and release documents kept.

Owns the store interfaces (`ArtifactStore` for immutable artifacts, `DocumentStore` for conditionally
replaced documents, `Store` for both) and their registry `STORES` by URI scheme (`interface`), one module
per backend (`file`, `s3`), and the in-memory fake for fast tests (`memory`).

Public: ArtifactStore, DocumentStore, Store, StoredObject, Location, AlreadyExists, Conflict,
KeyOutsideStore, STORES, open_store, store_uri_problem, copy_by_download, MemoryStore. Backends are reached
through `open_store` (or `packager.release.stores.file.FileStore` / `packager.release.stores.s3.S3Store`
for direct use).
"""

from packager.release.stores.interface import (
    STORES,
    AlreadyExists,
    ArtifactStore,
    Conflict,
    DocumentStore,
    KeyOutsideStore,
    Location,
    Store,
    StoredObject,
    copy_by_download,
    open_store,
    store_uri_problem,
)
from packager.release.stores.memory import MemoryStore

__all__ = [
    "STORES",
    "AlreadyExists",
    "ArtifactStore",
    "Conflict",
    "KeyOutsideStore",
    "DocumentStore",
    "Location",
    "Store",
    "StoredObject",
    "copy_by_download",
    "open_store",
    "store_uri_problem",
    "MemoryStore",
]
