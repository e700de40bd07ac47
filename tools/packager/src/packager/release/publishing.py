"""Publishing artifacts: where a branch's artifact goes, and the rule that a published key never changes.

Production branches publish `<name>_<version>.tar.gz` to the production store; any other branch
publishes `<branch>/<commit12>/<name>_<version>.tar.gz` to the staging store, so a staging endpoint never
serves a stale copy of another commit. Publishing the same bytes again is a no-op (one HEAD); different
bytes under a published key are refused: the fix is a new model_version.txt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from packager import __version__
from packager.artifacts import Artifact, artifact_name
from packager.config import Stores
from packager.errors import PackagerError
from packager.provenance import branch_slug
from packager.stores import AlreadyExists, Store, StoredObject, open_store

STAGING_VARIABLE = "PACKAGER_STAGING_URI"
PRODUCTION_VARIABLE = "PACKAGER_PRODUCTION_URI"


class ImmutableKey(PackagerError):
    """A published key already holds other bytes."""


@dataclass(frozen=True)
class Destination:
    """Which store and key an artifact is published to."""

    store: Store
    key: str
    production: bool

    @property
    def uri(self) -> str:
        return f"{self.store.uri.rstrip('/')}/{self.key}"


@dataclass(frozen=True)
class Published:
    """What publishing did: uploaded, or found the same artifact already there."""

    destination: Destination
    sha256: str
    outcome: str  # "uploaded", "unchanged" (same bytes) or "same contents" (equal files, other archive bytes)


def store_uris(stores: Stores, staging: str | None = None, production: str | None = None) -> tuple[str, str]:
    """The staging and production URIs: flags, then environment variables, then packager.toml."""
    return (
        staging or os.environ.get(STAGING_VARIABLE) or stores.staging,
        production or os.environ.get(PRODUCTION_VARIABLE) or stores.production,
    )


@dataclass(frozen=True)
class Route:
    """Where a push of one branch and commit publishes: a store, and a key prefix inside it."""

    store: Store
    prefix: str
    production: bool

    def destination(self, name: str, version: int) -> Destination:
        return Destination(self.store, self.prefix + artifact_name(name, version), self.production)


def route(branch: str, commit: str, stores: Stores, root: Path | None, uris: tuple[str, str]) -> Route:
    """Production branches publish at the production store's root; others under a per-commit staging prefix."""
    staging_uri, production_uri = uris
    if branch in stores.production_branches:
        return Route(open_store(production_uri, root), "", production=True)
    return Route(open_store(staging_uri, root), f"{branch_slug(branch)}/{commit[:12]}/", production=False)


def metadata_for(artifact: Artifact, commit: str) -> dict[str, str]:
    """What is recorded with the object (S3 user metadata), so that one HEAD answers "is this the same?"."""
    return {
        "sha256": artifact.sha256,
        "content-digest": artifact.content_digest,
        "model": artifact.name,
        "version": str(artifact.version),
        "commit": commit,
        "toolkit": f"packager {__version__}",
    }


def publish(artifact: Artifact, target: Destination, commit: str) -> Published:
    """Create the key, or accept what is there if it is the same artifact; refuse anything else."""
    existing = target.store.head(target.key)
    if existing is None:
        try:
            target.store.put_new(target.key, artifact.path, metadata_for(artifact, commit))
            return Published(target, artifact.sha256, "uploaded")
        except AlreadyExists:  # a concurrent pusher won the race: is it the same artifact?
            existing = target.store.head(target.key)
            assert existing is not None
    return Published(target, artifact.sha256, same_or_refuse(existing, artifact, target))


def same_or_refuse(existing: StoredObject, artifact: Artifact, target: Destination) -> str:
    if existing.metadata.get("sha256") == artifact.sha256:
        return "unchanged"
    if existing.metadata.get("content-digest") == artifact.content_digest:
        return "same contents"
    raise ImmutableKey(
        f"{target.uri} is already published with other contents (sha256 {existing.metadata.get('sha256', '?')[:12]}, "
        f"commit {existing.metadata.get('commit', '?')[:12]}); a published version never changes: "
        f"bump models/{artifact.name}/model_version.txt (now {artifact.version}) and push again"
    )
