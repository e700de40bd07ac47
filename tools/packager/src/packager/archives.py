"""Reproducible tar.gz archives (fixed order, times, owners, modes, gzip header), safe extraction, and file
digests: what environments and artifacts are packed with.

What is reproducible, and where: the *tar stream* (the uncompressed bytes) depends only on the members,
so its digest, and every file's, is the same on any machine and Python. The *gzip bytes* are ISA-L's,
which picks a code path per CPU: they are identical across runs, Python versions and machines of one CPU
family (e.g. AVX-512), and may differ on another (AVX2 only). An artifact's identity is therefore its
content (the manifest's content digest), never the archive's sha256 across machines.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from isal import isal_zlib

from packager.partials import partial_file


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ISA-L level 3: about ten times faster than zlib level 6 here, for about 10% more bytes.
COMPRESS_LEVEL = 3


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


def write_tar_gz(out: Path, members: Iterable[Member]) -> None:
    """Write `members` in the given order with normalized metadata; `out` (mode 0644) appears only when
    complete, and what an interrupted writer left beside it is removed (see `partials`)."""
    with partial_file(out) as partial:  # unique: concurrent builders of one archive never share one
        with open(partial, "wb") as raw:
            compressed = _FixedChunkGzip(raw)
            with tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for member in members:
                    _add(tar, member)
            compressed.finish()
        os.replace(partial, out)


class _FixedChunkGzip:
    """A gzip stream fed in fixed 1 MiB chunks, so its bytes depend on the input and the CPU family alone.

    ISA-L's deflate output depends on how its input is split into calls, and gzip.GzipFile splits
    differently across Python versions (3.12 buffers writes); feeding fixed chunks makes the archive the
    same on any Python. The header carries no name and no time.
    """

    CHUNK = 1 << 20

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.pending = bytearray()
        self.compressor = isal_zlib.compressobj(COMPRESS_LEVEL, isal_zlib.DEFLATED, 31)  # 31: gzip framing

    def write(self, data: bytes) -> int:
        self.pending += data
        while len(self.pending) >= self.CHUNK:
            self.raw.write(self.compressor.compress(bytes(self.pending[: self.CHUNK])))
            del self.pending[: self.CHUNK]
        return len(data)

    def finish(self) -> None:
        self.raw.write(self.compressor.compress(bytes(self.pending)) + self.compressor.flush())
        self.pending.clear()


def _add(tar: tarfile.TarFile, member: Member) -> None:
    info = tarfile.TarInfo(member.name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if member.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    elif member.kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, member.target
        tar.addfile(info)
    elif member.kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, member.target
        info.mode = 0o755 if member.executable else 0o644
        tar.addfile(info)
    else:
        info.mode = 0o755 if member.executable else 0o644
        if member.data is not None:
            info.size = len(member.data)
            tar.addfile(info, io.BytesIO(member.data))
        else:
            assert member.source is not None
            with open(member.source, "rb") as handle:
                info.size = os.fstat(handle.fileno()).st_size
                tar.addfile(info, handle)


class UnsafeArchive(Exception):
    """An archive member would land outside the extraction directory, or is not a plain entry."""


def extract(archive: Path, destination: Path, absolute_symlinks: bool = False) -> None:
    """Extract `archive` into `destination`, refusing absolute or `..` paths and links that leave it.

    `absolute_symlinks` admits symlinks to absolute paths (a virtualenv's bin/python points at its base
    interpreter); everything else must stay inside `destination`.
    """
    root = destination.resolve()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            check_member(member, root, absolute_symlinks)
        tar.extractall(destination, filter="tar" if absolute_symlinks else "data")


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
