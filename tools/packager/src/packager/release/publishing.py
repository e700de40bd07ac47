"""Publishing artifacts: where a branch's artifact goes, and the rule that a published key never changes.

Production branches publish `<name>_<version>.tar.gz` to the production store; any other branch
publishes `<branch>/<commit12>/<name>_<version>.tar.gz` to the staging store, so a staging endpoint never
serves a stale copy of another commit. Publishing the same bytes again is a no-op (one HEAD); different
bytes under a published key are refused: the fix is a new model_version.txt.

Of concurrent production pushes of one key with different bytes, exactly one wins. What S3 guarantees:
`If-None-Match: *` on PutObject and CompleteMultipartUpload (since August 2024) is checked when the write
commits, so of two creates one succeeds and the other gets 412 Precondition Failed, or 409
ConditionalRequestConflict while the other is in flight (retry; for a multipart upload, start it again);
`If-Match: <etag>` makes a PutObject or CompleteMultipartUpload a compare-and-swap (since November 2024),
which the release history's documents use; DeleteObject honours `If-Match` too (since September 2025);
and reads are strongly consistent after a write (since December 2020), so the HEAD after a create sees
it. Sources: the Amazon S3 User Guide's "How to prevent object overwrites with conditional writes", "How
to perform conditional deletes" and "Amazon S3 data consistency model"; the S3 API Reference's
PutObject and CompleteMultipartUpload (`IfNoneMatch`: 412, and 409 "re-initiate the multipart upload");
AWS What's New, "Amazon S3 adds support for conditional writes" (August 2024) and "Amazon S3 adds new
functionality for conditional writes" (2024-11-25).

A store that does not honour the condition (moto's threaded server; an S3-compatible server without
conditional writes) lets a second create replace the first, even after the first was read back. So a
create is read back (`publish`), and the release history, whose updates are conditional, decides
(`record_release`): it binds the key to the first sha256 recorded for it; that pusher puts its bytes back
if another's replaced them, and every other pusher removes what it wrote and is refused. A late
replacement in a bucket without versioning can only be removed, which leaves the key empty until the
winner's commit is pushed again (the refusal says so); with versioning the winner's version is current
again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from packager import __version__
from packager.artifacts import Artifact, artifact_name, branch_slug
from packager.errors import EnvironmentFailure, PackagerError
from packager.release.history import ATTEMPTS, OtherBytes, new_entry, record
from packager.release.stores import AlreadyExists, ArtifactStore, Store, StoredObject

# Uploaded; or found there already: "unchanged" (the same bytes), "same contents" (equal files, other
# archive bytes).
PublishOutcome = Literal["uploaded", "unchanged", "same contents"]


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
    sha256: str  # what the key was read back holding: ours, or (for "same contents") the earlier archive's
    outcome: PublishOutcome


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


def route(branch: str, commit: str, *, store: Store, production: bool) -> Route:
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
    outcome = same_or_refuse(existing, artifact, target)
    return Published(target, existing.metadata.get("sha256", artifact.sha256), outcome)


def publish_release(artifact: Artifact, route: Route) -> Published:
    """Publish where `route` sends the artifact; in production, record the release too (`record_release`)."""
    published = publish(artifact, route.destination(artifact), route.commit)
    if route.production:
        record_release(artifact, published, route)
    return published


def record_release(artifact: Artifact, published: Published, route: Route) -> None:
    """Record a production publish in the release history, bound to the sha256 the key was read back
    holding, then make sure the key holds what the history names.

    The history's conditional update decides between pushers whose creates a store let through (one that
    does not honour If-None-Match lets a second create replace the first, even after the first was read
    back): the first to record the key wins and puts its bytes back if they were replaced; the others
    remove what they wrote and are refused."""
    target = published.destination
    entry = new_entry(
        "publish", artifact.version, key=target.key, sha256=published.sha256, commit=route.commit
    )
    try:
        record(route.store, artifact.name, entry, unless_known=True)
    except OtherBytes as lost:
        emptied = published.outcome == "uploaded" and _undo(target, artifact.sha256)
        winner = lost.recorded
        missing = (
            f"; this store let our create replace those bytes (it does not honour If-None-Match), so "
            f"{target.uri} is empty until commit {winner.commit[:12]} is pushed again"
            if emptied
            else ""
        )
        raise ImmutableKey(
            f"another push published other bytes as {target.uri} first (sha256 {winner.sha256[:12]}, commit "
            f"{winner.commit[:12]}){missing}; {_bump(artifact)}"
        ) from None
    if published.sha256 == artifact.sha256:
        _hold(target, artifact, route.commit)


def _undo(target: Destination, sha256: str) -> bool:
    """Remove our bytes from a key the history gives to another push; whether that left the key empty."""
    stored = target.store.head(target.key)
    if stored is None or stored.metadata.get("sha256") != sha256:
        return False
    target.store.remove(stored)
    return target.store.head(target.key) is None


def _hold(target: Destination, artifact: Artifact, commit: str) -> None:
    """Make the key hold our artifact, which the history names: remove another push's bytes that replaced
    it, and create it again where that left the key empty."""
    for _ in range(ATTEMPTS):
        stored = target.store.head(target.key)
        if stored is not None and stored.metadata.get("sha256") == artifact.sha256:
            return
        if stored is not None:
            target.store.remove(stored)
            continue
        try:
            target.store.put_new(target.key, artifact.path, metadata_for(artifact, commit))
        except AlreadyExists:
            continue
    raise PublishError(
        f"{target.uri} kept changing under {ATTEMPTS} attempts to hold what the history names; push again"
    )


def same_or_refuse(
    existing: StoredObject, artifact: Artifact, target: Destination
) -> Literal["unchanged", "same contents"]:
    """`unchanged` or `same contents` when the stored object is this artifact; ImmutableKey otherwise."""
    if existing.metadata.get("sha256") == artifact.sha256:
        return "unchanged"
    if existing.metadata.get("content-digest") == artifact.content_digest:
        return "same contents"
    raise ImmutableKey(
        f"{target.uri} is already published with other contents (sha256 {existing.metadata.get('sha256', '?')[:12]}, "
        f"commit {existing.metadata.get('commit', '?')[:12]}); {_bump(artifact)}"
    )


def _bump(artifact: Artifact) -> str:
    return (
        f"a published version never changes: bump models/{artifact.name}/model_version.txt "
        f"(now {artifact.version}) and push again"
    )
