"""Reproducible tar.gz archives (fixed order, times, owners, modes, gzip header), safe extraction, and file
digests: what environments and artifacts are packed with.

What is reproducible, and where: the *tar stream* (the uncompressed bytes) depends only on the members,
so its digest, and every file's, is the same on any machine and Python. The *gzip bytes* are ISA-L's
level 1 on fixed 1 MiB blocks, compressed on every core: the same for any thread count, and the same on
the CPU families tried (AVX-512, AVX2, SSE4.2; ISA-L picks a code path per CPU, and its level 3 wrote
other bytes on AVX2). An artifact's identity stays its content (the manifest's content digest), so that a
CPU family not tried cannot change what counts as the same artifact.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from isal import igzip, igzip_threaded, isal_zlib

from packager.partials import partial_file


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ISA-L level 1 on fixed 1 MiB blocks: on float32 weights, smaller than `tar -czf` (zlib level 6) and
# about fifteen times faster per core (see benchmarks/artifacts.py).
COMPRESS_LEVEL = 1
BLOCK_SIZE = 1 << 20


@dataclass(frozen=True)
class Written:
    """What write_tar_gz wrote: the archive's sha256 and size, and the sha256 of each file member."""

    sha256: str
    size: int
    files: dict[str, str]


@dataclass(frozen=True)
class Member:
    """One archive entry: a directory, a symlink, a hard link to an earlier member, or a file read from
    `source` or given as `data`."""

    name: str
    kind: str  # "dir", "file", "symlink" or "hardlink"
    source: Path | None = None
    data: bytes | None = None
    executable: bool = False
    target: str = ""


def tree_members(
    root: Path, prefix: str = "", keep: Callable[[str], bool] = lambda name: True
) -> Iterator[Member]:
    """Members for everything under `root`, depth first in name order, named `prefix/<relative path>`.

    `keep` sees each relative path; a directory it rejects is skipped whole.
    """
    yield from _walk(root, "", prefix, keep)


def _walk(root: Path, relative_dir: str, prefix: str, keep: Callable[[str], bool]) -> Iterator[Member]:
    directory = root / relative_dir if relative_dir else root
    for name in sorted(os.listdir(directory)):
        relative = f"{relative_dir}/{name}" if relative_dir else name
        if not keep(relative):
            continue
        path = directory / name
        arcname = f"{prefix}/{relative}" if prefix else relative
        if path.is_symlink():
            yield Member(arcname, "symlink", target=os.readlink(path))
        elif path.is_dir():
            yield Member(arcname, "dir")
            yield from _walk(root, relative, prefix, keep)
        else:
            yield Member(arcname, "file", source=path, executable=bool(path.stat().st_mode & stat.S_IXUSR))


def write_tar_gz(out: Path, members: Iterable[Member], threads: int | None = None) -> Written:
    """Write `members` in the given order with normalized metadata, compressed on `threads` threads (default:
    every core this process may use); `out` (mode 0644) appears only when complete, and what an interrupted
    writer left beside it is removed (see `partials`). One read of each file and of nothing else: the
    archive's sha256 is taken from the compressed bytes as they are written."""
    with partial_file(out) as partial:  # unique: concurrent builders of one archive never share one
        with open(partial, "wb") as raw:
            sink = _HashingSink(raw)
            with igzip_threaded.open(  # type: ignore[no-untyped-call]
                sink,
                "wb",
                compresslevel=COMPRESS_LEVEL,
                threads=threads or usable_cores(),
                block_size=BLOCK_SIZE,
            ) as compressed:
                blocks = _FixedBlocks(compressed)
                files = _write_tar(blocks, members)
                blocks.close()
        os.replace(partial, out)
    return Written(sink.digest.hexdigest(), sink.size, files)


def usable_cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


class _HashingSink:
    """A binary file written through, with the sha256 and size of everything written."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class _FixedBlocks:
    """Passes its input on in blocks of exactly BLOCK_SIZE bytes (the last may be shorter).

    The threaded gzip writer compresses each block on its own (with the previous block's last 32 KiB as
    its dictionary), so its output depends on the block boundaries; fixing them here makes the archive
    depend on the input alone, not on how it was written or on the number of threads.
    """

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.pending = bytearray()

    def write(self, data: bytes) -> None:
        self.pending += data
        whole = len(self.pending) - len(self.pending) % BLOCK_SIZE
        if whole:
            with memoryview(self.pending) as view:
                for start in range(0, whole, BLOCK_SIZE):
                    self.sink.write(view[start : start + BLOCK_SIZE])
            del self.pending[:whole]

    def close(self) -> None:
        self.sink.write(bytes(self.pending))
        self.pending.clear()


def _write_tar(sink: _FixedBlocks, members: Iterable[Member]) -> dict[str, str]:
    """Write the tar stream of `members` (the bytes tarfile writes in PAX format) to `sink`; the sha256 of
    each file member, taken as it streams."""
    digests: dict[str, str] = {}
    offset = 0
    for member in members:
        info = _info(member)
        header = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
        sink.write(header)
        offset += len(header)
        if member.kind == "file":
            digests[member.name] = _write_data(sink, member, info.size)
            offset += info.size + _pad(sink, info.size, tarfile.BLOCKSIZE)
    sink.write(tarfile.NUL * 2 * tarfile.BLOCKSIZE)  # the end-of-archive marker, padded to a record
    _pad(sink, offset + 2 * tarfile.BLOCKSIZE, tarfile.RECORDSIZE)
    return digests


def _info(member: Member) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = 0o755 if member.executable else 0o644
    if member.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif member.kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, member.target
    elif member.kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, member.target
    elif member.data is not None:
        info.size = len(member.data)
    else:
        assert member.source is not None
        info.size = member.source.stat().st_size
    return info


def _write_data(sink: _FixedBlocks, member: Member, size: int) -> str:
    """Stream a file member's bytes to `sink`; their sha256. A source whose size changed since its header
    was written is an error (the archive would not hold what its header says)."""
    digest = hashlib.sha256(usedforsecurity=False)
    written = 0
    if member.data is not None:
        digest.update(member.data)
        sink.write(member.data)
        written = len(member.data)
    else:
        assert member.source is not None
        with open(member.source, "rb") as handle:
            for block in iter(lambda: handle.read(BLOCK_SIZE), b""):
                digest.update(block)
                sink.write(block)
                written += len(block)
    if written != size:
        raise OSError(f"{member.source}: changed while it was archived ({size} bytes, then {written})")
    return digest.hexdigest()


def _pad(sink: _FixedBlocks, offset: int, unit: int) -> int:
    """Write NULs up to the next multiple of `unit`; how many."""
    padding = -offset % unit
    sink.write(tarfile.NUL * padding)
    return padding


class UnsafeArchive(Exception):
    """An archive member would land outside the extraction directory, is not a plain entry, or would make
    the extracted tree differ from the member list."""


def extract(archive: Path, destination: Path, absolute_symlinks: bool = False) -> None:
    """Extract `archive` into `destination`, refusing absolute or `..` paths, links that leave it, and
    what `Members` refuses.

    `absolute_symlinks` admits symlinks to absolute paths (a virtualenv's bin/python points at its base
    interpreter); everything else must stay inside `destination`.
    """
    members = Members(destination.resolve(), absolute_symlinks)
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            members.admit(member)
        tar.extractall(destination, filter="tar" if absolute_symlinks else "data")


class Members:
    """The members of one archive so far, each admitted only if the tree extracted from them holds exactly
    what they say: every name once and in normal form, and hard links only to earlier regular files (so
    that no file is ever written twice, or through another name's inode)."""

    def __init__(self, root: Path, absolute_symlinks: bool) -> None:
        self.root = root
        self.absolute_symlinks = absolute_symlinks
        self.seen: set[str] = set()
        self.files: set[str] = set()

    def admit(self, member: tarfile.TarInfo) -> None:
        """Raise UnsafeArchive for a member that must not be extracted after the earlier ones."""
        check_member(member, self.root, self.absolute_symlinks)
        name = member.name
        if posixpath.normpath(name) != name:
            raise UnsafeArchive(
                f"member {name!r} is not written in normal form ({posixpath.normpath(name)!r})"
            )
        if name in self.seen:
            raise UnsafeArchive(f"member {name!r} appears twice")
        if member.islnk() and member.linkname not in self.files:
            raise UnsafeArchive(
                f"member {name!r} is a hard link to {member.linkname!r}, not to an earlier file"
            )
        self.seen.add(name)
        if member.isreg():
            self.files.add(name)


def check_member(member: tarfile.TarInfo, root: Path, absolute_symlinks: bool) -> None:
    """Raise UnsafeArchive for a member that would land outside `root` or is not a plain entry."""
    name = member.name
    if name.startswith("/") or ".." in Path(name).parts:
        raise UnsafeArchive(f"member {name!r} would be written outside the extraction directory")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"member {name!r} is not a file, directory or link")
    if member.issym() or member.islnk():
        target = member.linkname
        if member.issym() and target.startswith("/") and absolute_symlinks:
            return
        base = root / Path(name).parent if member.issym() else root
        resolved = (base / target).resolve() if not target.startswith("/") else Path(target)
        if not resolved.is_relative_to(root):
            raise UnsafeArchive(f"member {name!r} links to {target!r}, outside the extraction directory")


# The most bytes one member's headers may take (its PAX or GNU long-name records included): a path of
# PATH_MAX bytes fits many times over; a PAX record of a gigabyte, which tarfile would read whole, does not.
MAX_HEADER_BYTES = 64 << 10
# What ISA-L raises for a corrupt deflate stream (its stub calls it an instance, not a class).
GzipError: type[Exception] = isal_zlib.error  # type: ignore[assignment]


class TarStream:
    """A tar.gz read once, front to back, that never decompresses past what its reader let through: each
    member's headers up to MAX_HEADER_BYTES, then the data of the member just yielded, up to the size its
    header gives; whoever iterates must refuse a member before reading data it should not write."""

    def __init__(self, compressed: io.IOBase) -> None:
        self._gunzip = igzip.IGzipFile(fileobj=compressed, mode="rb")  # type: ignore[no-untyped-call]
        self._position = 0
        self._end = MAX_HEADER_BYTES
        self._where = "at the start"
        self.tar: tarfile.TarFile = tarfile.open(  # type: ignore[call-overload]
            fileobj=self, mode="r|", bufsize=BLOCK_SIZE
        )

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        for member in self.tar:
            self._end = self.tar.offset + MAX_HEADER_BYTES  # its data, then the next member's headers
            self._where = f"after member {member.name!r}"
            yield member

    def read(self, size: int) -> bytes:
        """Decompressed bytes for tarfile, which asks for more only when it needs them."""
        if self._position >= self._end:
            raise UnsafeArchive(f"a member header {self._where} is longer than {MAX_HEADER_BYTES >> 10} KiB")
        try:
            data: bytes = self._gunzip.read(min(size, self._end - self._position))
        except GzipError as error:
            raise tarfile.ReadError(f"corrupt gzip data: {error}") from None
        self._position += len(data)
        return data
