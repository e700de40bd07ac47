"""Reading built archives: the manifest without decompressing the rest, safe extraction, and checking
every file against the manifest (and the manifest against its signature)."""

from __future__ import annotations

import json
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from packager.archives import UnsafeArchive, extract, file_digest
from packager.artifacts.artifact import MANIFEST, SIGNATURE, Artifact, ArtifactError, content_digest
from packager.artifacts.signing import verify
from packager.modeldir import TRITON_CONFIG, ConfigUnreadable, TritonModel, read_config


def read_manifest(archive: Path) -> tuple[dict[str, Any], bytes, bytes | None]:
    """The manifest (parsed and raw) and its signature, if any, read from an archive.

    The packager writes both first, so reading stops there instead of decompressing the whole archive.
    """
    raw: bytes | None = None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name == MANIFEST:
                    raw = _member_bytes(tar, member)
                elif raw is not None:
                    signature = _member_bytes(tar, member) if member.name == SIGNATURE else None
                    return json.loads(raw), raw, signature
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ArtifactError(f"{archive}: not a readable tar.gz ({error})") from None
    if raw is None:
        raise ArtifactError(f"{archive}: no {MANIFEST}; not an artifact built by the packager")
    return json.loads(raw), raw, None


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | None:
    handle = tar.extractfile(member)
    return handle.read() if handle is not None else None


def load_artifact(archive: Path) -> Artifact:
    manifest, _, _ = read_manifest(archive)
    return Artifact(archive, file_digest(archive), manifest)


def verify_artifact(
    artifact: Artifact, public_key: Path | None = None, expected_sha256: str | None = None
) -> list[str]:
    """Every way an artifact differs from its manifest, signature and recorded digest (none: it verifies)."""
    problems = []
    if expected_sha256 is not None and artifact.sha256 != expected_sha256:
        problems.append(
            f"archive sha256 is {artifact.sha256}, but {expected_sha256} was recorded when it was published"
        )
    manifest, raw, signature = read_manifest(artifact.path)
    with unpacked(artifact.path) as root:
        present = {
            path.relative_to(root).as_posix()
            for path in root.rglob("*")
            if path.is_file() and path.relative_to(root).as_posix() not in (MANIFEST, SIGNATURE)
        }
        listed = manifest.get("files", {})
        for name in sorted(set(listed) - present):
            problems.append(f"{name}: listed in the manifest but missing")
        for name in sorted(present - set(listed)):
            problems.append(f"{name}: present but not in the manifest")
        for name in sorted(set(listed) & present):
            if file_digest(root / name) != listed[name]["sha256"]:
                problems.append(f"{name}: sha256 differs from the manifest")
    if content_digest(listed) != manifest.get("content_digest"):
        problems.append("the manifest's content_digest does not match its file list")
    if public_key is not None:
        if signature is None:
            problems.append(f"not signed ({SIGNATURE} is missing), but a public key is configured")
        elif not verify(raw, signature, public_key):
            problems.append(f"the manifest signature does not verify with {public_key}")
    return problems


@contextmanager
def unpacked(archive: Path) -> Iterator[Path]:
    """The archive safely extracted into a temporary directory (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="packager-artifact-") as scratch:
        try:
            extract(archive, Path(scratch))
        except UnsafeArchive as error:
            raise ArtifactError(f"{archive}: unsafe archive: {error}") from None
        except (tarfile.TarError, OSError, EOFError) as error:
            raise ArtifactError(f"{archive}: not a readable tar.gz ({error})") from None
        yield Path(scratch)


def triton_models_in(root: Path) -> dict[str, TritonModel]:
    """The Triton models of an unpacked artifact (its top-level directories with a config.pbtxt)."""
    models = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and (entry / TRITON_CONFIG).is_file():
            try:
                models[entry.name] = TritonModel(entry, read_config(entry / TRITON_CONFIG))
            except ConfigUnreadable as error:
                raise ArtifactError(f"the artifact's {error.diagnostic.message}") from None
    return models
