"""Verifying an artifact wherever it is: a local file, or a published object named by its store URI
(`s3://bucket/prefix/key`, `file:///dir/key`), fetched through the same stores as publishing uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from packager.artifacts import ArtifactError, verify_artifact
from packager.release.stores import STORES, open_store
from packager.scratch import scratch_dir


@dataclass(frozen=True)
class Verification:
    """What verifying one artifact found: what it is, and every way it differs (none: it verifies)."""

    target: str
    model: str
    version: int
    sha256: str
    files: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_target(target: str, root: Path | None, public_key: Path | None) -> Verification:
    """Check an artifact against its manifest, the sha256 recorded when it was published (for a store
    object), and its signature when a public key is given. One that cannot even be read safely (ArtifactError)
    is named as `target`, not as the scratch copy of a store object."""
    with scratch_dir("verify") as scratch:
        path, recorded = _fetch(target, Path(scratch), root)
        try:
            artifact, problems = verify_artifact(path, public_key, expected_sha256=recorded)
        except ArtifactError as error:
            raise ArtifactError(f"{target} does NOT verify: {str(error).removeprefix(f'{path}: ')}") from None
    files = len(artifact.manifest.get("files", {}))
    return Verification(target, artifact.name, artifact.version, artifact.sha256, files, problems)


def _fetch(target: str, scratch: Path, root: Path | None) -> tuple[Path, str | None]:
    """A local copy of the artifact and the sha256 recorded when it was published (None for a plain file)."""
    if urlparse(target).scheme not in STORES.names():
        if not Path(target).is_file():
            raise ArtifactError(f"{target}: no such artifact file")
        return Path(target), None
    parent, _, key = target.rstrip("/").rpartition("/")
    store = open_store(parent, root)
    try:
        stored = store.head(key)
        if stored is None:
            raise ArtifactError(f"{target}: no such artifact in the store")
        store.download(key, scratch / key)
    finally:
        store.close()
    return scratch / key, stored.metadata.get("sha256")
