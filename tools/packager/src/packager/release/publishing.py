"""Publishing artifacts: where a branch's artifact goes, and the rule that a published key never changes.

Production branches publish `<name>_<version>.tar.gz` to the production store; any other branch
publishes `<branch>/<commit12>/<name>_<version>.tar.gz` to the staging store, so a staging endpoint never
serves a stale copy of another commit. Publishing the same bytes again is a no-op (one HEAD); different
bytes under a published key are refused: the fix is a new model_version.txt.
"""

from __future__ import annotations

from dataclasses import dataclass

from packager import __version__
from packager.artifacts import Artifact, artifact_name, branch_slug
from packager.errors import EnvironmentFailure, PackagerError
from packager.release.stores import AlreadyExists, ArtifactStore, Store, StoredObject


class ImmutableKey(PackagerError):
    """A published key already holds other bytes."""


class PublishError(EnvironmentFailure):
    """The store did not behave as a store must."""


@dataclass(frozen=True)
class Destination:
    """Which store and key an artifact is published to."""

    store: ArtifactStore
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


@dataclass(frozen=True)
class Route:
    """Where a push of one branch and commit publishes: a production branch at its store's root, any other
    under `<branch>/<commit12>/` of staging, or `<branch>/<commit12>-dirty-<content12>/` for sources that
    are not committed (each edit its own key; never promotable, since promote looks for `<commit12>/`)."""

    store: Store
    branch: str
    commit: str
    production: bool

    def destination(self, artifact: Artifact) -> Destination:
        name = artifact_name(artifact.name, artifact.version)
        if self.production:
            return Destination(self.store, name, production=True)
        revision = self.commit[:12]
        if artifact.manifest["source_dirty"]:
            revision += f"-dirty-{artifact.content_digest[:12]}"
        return Destination(self.store, f"{branch_slug(self.branch)}/{revision}/{name}", production=False)


def route(branch: str, commit: str, store: Store, production: bool) -> Route:
    """Where `branch` at `commit` publishes, in `store` (production's or staging's)."""
    return Route(store, branch, commit, production)


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
    """Create the key, or accept what is there if it is the same artifact; refuse anything else.

    A create the store reports as done is read back: only if the stored object is ours is it `uploaded`
    (a store weaker than S3, such as moto, can let two conditional creates both succeed)."""
    existing = target.store.head(target.key)
    if existing is None:
        try:
            target.store.put_new(target.key, artifact.path, metadata_for(artifact, commit))
            created = True
        except AlreadyExists:
            created = False  # a concurrent pusher won the race: is it the same artifact?
        existing = target.store.head(target.key)
        if existing is None:
            raise PublishError(f"{target.uri} was created, but reading it back found nothing; push again")
        if created and existing.metadata.get("sha256") == artifact.sha256:
            return Published(target, artifact.sha256, "uploaded")
    return Published(target, artifact.sha256, same_or_refuse(existing, artifact, target))


def same_or_refuse(existing: StoredObject, artifact: Artifact, target: Destination) -> str:
    """`unchanged` or `same contents` when the stored object is this artifact; ImmutableKey otherwise."""
    if existing.metadata.get("sha256") == artifact.sha256:
        return "unchanged"
    if existing.metadata.get("content-digest") == artifact.content_digest:
        return "same contents"
    raise ImmutableKey(
        f"{target.uri} is already published with other contents (sha256 {existing.metadata.get('sha256', '?')[:12]}, "
        f"commit {existing.metadata.get('commit', '?')[:12]}); a published version never changes: "
        f"bump models/{artifact.name}/model_version.txt (now {artifact.version}) and push again"
    )
