"""Reading built archives: the manifest without decompressing the rest, and verified extraction, which
checks every file against the manifest (and the manifest against its signature) in the one read that
also unpacks it.

What is written is bounded by the manifest, which comes first: every other member must be a file it lists
(at most its listed size) or a directory holding one, each once, and a hard link only to an earlier file.
So extraction writes at most the sum of the listed sizes, and every file's bytes are the ones hashed as it
was written: no file is written twice, or through another name's inode. With a public key, the signature is
checked before anything is extracted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packager.archives import Members, TarStream, UnsafeArchive
from packager.artifacts.artifact import MANIFEST, SIGNATURE, Artifact, ArtifactError, content_digest, parents
from packager.artifacts.signing import verify
from packager.modeldir import TRITON_CONFIG, ConfigUnreadable, TritonModel, read_config
from packager.scratch import scratch_dir

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer  # pants: no-infer-dep

# What the builder writes is far smaller: about 150 bytes a file, and an Ed25519 signature is 64 bytes.
MAX_MANIFEST_BYTES = 16 << 20
MAX_SIGNATURE_BYTES = 1 << 10


def read_manifest(archive: Path) -> tuple[dict[str, Any], bytes, bytes | None]:
    """The manifest (parsed and raw) and its signature, if any, read from an archive.

    The packager writes both first, so reading stops there instead of decompressing the whole archive.
    """
    _must_exist(archive)
    with open(archive, "rb") as handle, _safely(archive):
        stream = TarStream(handle)
        raw, signature, _ = _head(archive, stream, iter(stream))
    return _parse(archive, raw), raw, signature


def _must_exist(archive: Path) -> None:
    if not archive.is_file():
        raise ArtifactError(f"{archive}: no such artifact file")


class _HashingReader(io.RawIOBase):
    """A binary file read through, with the sha256 of every byte read so far."""

    def __init__(self, handle: io.BufferedReader) -> None:
        super().__init__()
        self.handle = handle
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        with memoryview(buffer) as view:
            count = self.handle.readinto(view)
            self.digest.update(view[:count])
        return count

    def finish(self) -> str:
        """Read what is left (the gzip trailer) and return the digest of the whole file."""
        while self.read(1 << 20):
            pass
        return self.digest.hexdigest()


@contextmanager
def _safely(archive: Path) -> Iterator[None]:
    """What cannot be read safely from `archive` becomes an ArtifactError naming it."""
    try:
        yield
    except UnsafeArchive as error:
        raise ArtifactError(f"{archive}: unsafe archive: {error}") from None
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ArtifactError(f"{archive}: not a readable tar.gz ({error})") from None


def _head(
    archive: Path, stream: TarStream, members: Iterator[tarfile.TarInfo]
) -> tuple[bytes, bytes | None, tarfile.TarInfo | None]:
    """The raw manifest and the signature, the members the builder writes first, each read within its
    bound; and the member after them, if any."""
    first = next(members, None)
    if first is None or first.name != MANIFEST:
        found = f"the first member is {first.name!r}" if first is not None else "it holds nothing"
        raise ArtifactError(f"{archive}: {found}, not {MANIFEST}; not an artifact built by the packager")
    raw = _small(stream, first, MAX_MANIFEST_BYTES, "a manifest")
    second = next(members, None)
    if second is None or second.name != SIGNATURE:
        return raw, None, second
    return raw, _small(stream, second, MAX_SIGNATURE_BYTES, "a signature"), None


def _small(stream: TarStream, member: tarfile.TarInfo, limit: int, what: str) -> bytes:
    """The bytes of a regular member of at most `limit` bytes."""
    if not member.isreg():
        raise UnsafeArchive(f"{member.name} is not a regular file")
    if member.size > limit:
        raise UnsafeArchive(f"{member.name} holds {member.size} bytes; {what} holds at most {_size(limit)}")
    data = stream.tar.extractfile(member)
    assert data is not None
    return data.read()


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def _parse(archive: Path, raw: bytes) -> dict[str, Any]:
    """The manifest, refused unless it is an object whose files each have a sha256 and a size, and no file
    is another's directory."""
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _malformed(archive, "not JSON") from None
    if not isinstance(manifest, dict):
        raise _malformed(archive, "not a JSON object")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _malformed(archive, "its files are not a JSON object")
    for name, entry in files.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int)
            and not isinstance(entry.get("size"), bool)
            and entry["size"] >= 0
        ):
            raise _malformed(archive, f"its entry for {name!r} is not a sha256 and a size")
    for name in files:
        for parent in parents(name):
            if parent in files:
                raise _malformed(archive, f"it lists {parent!r} as a file and as the directory of {name!r}")
    return manifest


def _malformed(archive: Path, reason: str) -> ArtifactError:
    return ArtifactError(f"{archive}: {MANIFEST} is not a packager manifest: {reason}")


def _extract(
    stream: TarStream, members: Iterator[tarfile.TarInfo], destination: Path, listed: dict[str, Any]
) -> dict[str, str]:
    """Write every member under `destination`, each admitted first (see the module docstring); the sha256
    of each listed file as extracted: of the bytes last written to the inode its name ends at."""
    admitted = Members(destination.resolve(), absolute_symlinks=False)
    directories = {parent for name in listed for parent in parents(name)}
    written: dict[int, str] = {}
    for member in members:
        admitted.admit(member)
        _within_manifest(member, listed, directories)
        _write(stream.tar, member, destination, written)
    digests = {}
    for name in listed:
        with suppress(FileNotFoundError):
            digests[name] = written[os.lstat(destination / name).st_ino]
    return digests


def _within_manifest(member: tarfile.TarInfo, listed: dict[str, Any], directories: set[str]) -> None:
    """Raise UnsafeArchive for a member the manifest does not account for, before any of it is written."""
    name = member.name
    if member.issym():
        raise UnsafeArchive(f"member {name!r} is a symlink; artifacts hold only files and directories")
    if member.isdir():
        if name not in directories:
            raise UnsafeArchive(f"member {name!r} is a directory that holds no file of the manifest")
    elif name not in listed:
        raise UnsafeArchive(f"member {name!r} is not in the manifest")
    elif member.isreg() and member.size > listed[name]["size"]:
        raise UnsafeArchive(
            f"member {name!r} holds {member.size} bytes; the manifest lists {listed[name]['size']}"
        )


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, destination: Path, written: dict[int, str]) -> None:
    """Write one admitted member under `destination`: a file to a new inode (never an existing path), its
    sha256 noted by inode; a hard link to an earlier file's."""
    target = destination / member.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if member.isdir():
        target.mkdir(exist_ok=True)
    elif member.islnk():
        os.link(destination / member.linkname, target)
    else:
        source = tar.extractfile(member)
        assert source is not None
        digest = hashlib.sha256()
        with open(target, "xb") as out:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
            os.fchmod(out.fileno(), 0o755 if member.mode & 0o111 else 0o644)
            written[os.fstat(out.fileno()).st_ino] = digest.hexdigest()


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
    """Read the manifest and signature, check the signature, then extract and compare in the same read."""
    _must_exist(archive)
    with open(archive, "rb") as handle:
        reader = _HashingReader(handle)
        with _safely(archive):
            stream = TarStream(reader)
            members = iter(stream)
            raw, signature, following = _head(archive, stream, members)
        manifest = _parse(archive, raw)
        problems = _signature_problems(raw, signature, public_key)
        with _safely(archive):
            if not problems:
                rest = chain([following] if following is not None else [], members)
                problems = _differences(manifest, _extract(stream, rest, destination, manifest["files"]))
            sha256 = reader.finish()
    if expected_sha256 is not None and sha256 != expected_sha256:
        problems.insert(
            0, f"archive sha256 is {sha256}, but {expected_sha256} was recorded when it was published"
        )
    return Artifact(archive, sha256, manifest), problems


def _differences(manifest: dict[str, Any], digests: dict[str, str]) -> list[str]:
    """How the extracted files differ from the manifest."""
    listed = manifest["files"]
    problems = [f"{name}: listed in the manifest but missing" for name in sorted(set(listed) - set(digests))]
    problems += [
        f"{name}: sha256 differs from the manifest"
        for name in sorted(digests)
        if digests[name] != listed[name]["sha256"]
    ]
    if content_digest(listed) != manifest.get("content_digest"):
        problems.append("the manifest's content_digest does not match its file list")
    return problems


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
