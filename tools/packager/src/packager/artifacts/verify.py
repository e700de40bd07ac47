"""Reading built archives: the manifest without decompressing the rest, and verified extraction, which
checks every file against the manifest (and the manifest against its signature) in the one read that
also unpacks it."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from packager.archives import UnsafeArchive, check_member
from packager.artifacts.artifact import MANIFEST, SIGNATURE, Artifact, ArtifactError, content_digest
from packager.artifacts.signing import verify
from packager.modeldir import TRITON_CONFIG, ConfigUnreadable, TritonModel, read_config
from packager.scratch import scratch_dir


def read_manifest(archive: Path) -> tuple[dict[str, Any], bytes, bytes | None]:
    """The manifest (parsed and raw) and its signature, if any, read from an archive.

    The packager writes both first, so reading stops there instead of decompressing the whole archive.
    """
    raw: bytes | None = None
    _must_exist(archive)
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


def _must_exist(archive: Path) -> None:
    if not archive.is_file():
        raise ArtifactError(f"{archive}: no such artifact file")


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | None:
    handle = tar.extractfile(member)
    return handle.read() if handle is not None else None


class _HashingReader:
    """A binary file read through, with the sha256 of every byte read so far."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data

    def finish(self) -> str:
        """Read what is left (the gzip trailer) and return the digest of the whole file."""
        while self.read(1 << 20):
            pass
        return self.digest.hexdigest()


def _extract_checked(archive: Path, destination: Path) -> tuple[Artifact, bytes, bytes | None, list[str]]:
    """Extract an archive in one pass: every member checked before it is written, every file hashed as it
    is written, and the archive's own sha256 taken from the same read. Returns the artifact, the raw
    manifest, the signature and how the files differ from the manifest."""
    raw: bytes | None = None
    signature: bytes | None = None
    digests: dict[str, str] = {}
    problems: list[str] = []
    root = destination.resolve()
    _must_exist(archive)
    try:
        with open(archive, "rb") as handle:
            reader = _HashingReader(handle)
            with tarfile.open(fileobj=reader, mode="r|gz") as tar:  # type: ignore[call-overload]
                for member in tar:
                    if member.name in (MANIFEST, SIGNATURE):
                        data = _member_bytes(tar, member)
                        raw, signature = (data, signature) if member.name == MANIFEST else (raw, data)
                        continue
                    check_member(member, root, absolute_symlinks=False)
                    problems.extend(_write(tar, member, destination, digests))
            sha256 = reader.finish()
    except UnsafeArchive as error:
        raise ArtifactError(f"{archive}: unsafe archive: {error}") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ArtifactError(f"{archive}: not a readable tar.gz ({error})") from None
    if raw is None:
        raise ArtifactError(f"{archive}: no {MANIFEST}; not an artifact built by the packager")
    manifest = json.loads(raw)
    listed = manifest.get("files", {})
    problems += [f"{name}: listed in the manifest but missing" for name in sorted(set(listed) - set(digests))]
    problems += [f"{name}: present but not in the manifest" for name in sorted(set(digests) - set(listed))]
    problems += [
        f"{name}: sha256 differs from the manifest"
        for name in sorted(set(listed) & set(digests))
        if digests[name] != listed[name]["sha256"]
    ]
    if content_digest(listed) != manifest.get("content_digest"):
        problems.append("the manifest's content_digest does not match its file list")
    return Artifact(archive, sha256, manifest), raw, signature, problems


def _write(
    tar: tarfile.TarFile, member: tarfile.TarInfo, destination: Path, digests: dict[str, str]
) -> list[str]:
    """Write one (already checked) member under `destination`, noting each file's sha256."""
    target = destination / member.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if member.isdir():
        target.mkdir(exist_ok=True)
    elif member.issym():
        return [f"{member.name}: a symlink; artifacts hold only files and directories"]
    elif member.islnk():
        if member.linkname not in digests:
            return [f"{member.name}: a hard link to {member.linkname!r}, which is not an earlier file"]
        os.link(destination / member.linkname, target)
        digests[member.name] = digests[member.linkname]
    else:
        source = tar.extractfile(member)
        assert source is not None
        digest = hashlib.sha256()
        with open(target, "wb") as out:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        target.chmod(0o755 if member.mode & 0o111 else 0o644)
        digests[member.name] = digest.hexdigest()
    return []


def _signature_problems(raw: bytes, signature: bytes | None, public_key: Path | None) -> list[str]:
    if public_key is None:
        return []
    if signature is None:
        return [f"not signed ({SIGNATURE} is missing), but a public key is configured"]
    if not verify(raw, signature, public_key):
        return [f"the manifest signature does not verify with {public_key}"]
    return []


def _check(
    archive: Path, destination: Path, public_key: Path | None, expected_sha256: str | None
) -> tuple[Artifact, list[str]]:
    artifact, raw, signature, problems = _extract_checked(archive, destination)
    if expected_sha256 is not None and artifact.sha256 != expected_sha256:
        problems.insert(
            0,
            f"archive sha256 is {artifact.sha256}, but {expected_sha256} was recorded when it was published",
        )
    return artifact, problems + _signature_problems(raw, signature, public_key)


def verify_artifact(
    archive: Path, public_key: Path | None = None, expected_sha256: str | None = None
) -> tuple[Artifact, list[str]]:
    """The artifact, and every way it differs from its manifest, signature and recorded digest (none: it
    verifies). The archive is read once."""
    with scratch_dir("verify") as scratch:
        return _check(archive, Path(scratch), public_key, expected_sha256)


@contextmanager
def verified(
    archive: Path, public_key: Path | None = None, expected_sha256: str | None = None
) -> Iterator[tuple[Artifact, Path]]:
    """The artifact unpacked into a temporary directory, yielded only once every file matched its manifest
    (and the manifest its signature, with a public key): nothing unverified is ever served."""
    with scratch_dir("artifact") as scratch:
        os.chmod(scratch, 0o755)  # a server in a container reads it as another user
        try:
            artifact, problems = _check(archive, Path(scratch), public_key, expected_sha256)
        except ArtifactError as error:
            reason = str(error).removeprefix(f"{archive}: ")
            raise ArtifactError(f"{archive} does not verify; nothing was run: {reason}") from None
        if problems:
            raise ArtifactError(f"{archive} does not verify; nothing was run:\n  " + "\n  ".join(problems))
        yield artifact, Path(scratch)


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
