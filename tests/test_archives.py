"""Reproducible archives (the tar stream and the gzip bytes, on every CPU family tried), and extraction
that keeps every member inside its directory."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from packager.archives import Member, UnsafeArchive, extract, tree_members, write_tar_gz

# The sha256 of the uncompressed tar stream: the same on every machine and Python (3.11.7, 3.12.1, 3.13.0
# checked).
PINNED_TAR_STREAM = "5e975d1c74e506c07f7432bcfa16089ba80fc40d34621f87f7b3fca5397715f5"
# The gzip bytes around it (ISA-L level 1 on fixed blocks): the same on AVX-512, AVX2 and SSE4.2 CPUs, and
# for any number of threads. (ISA-L's level 3 wrote other bytes on AVX2 than on AVX-512.)
PINNED_GZIP = "2dfa378a5443196a18203208ac9b47fe600d2a63a14d3ef41084f43aef1e5eb6"


def _tree(root: Path, mtime: int, mode: int) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "lib").mkdir()
    (root / "lib" / "data.txt").write_text("data\n")
    (root / "lib" / "data.txt").chmod(mode)
    (root / "lib" / "link").symlink_to("data.txt")
    for path in root.rglob("*"):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_content_gives_the_same_bytes_whatever_the_times_and_modes(tmp_path: Path) -> None:
    first = _tree(tmp_path / "a", mtime=1_000_000, mode=0o600)
    second = _tree(tmp_path / "b", mtime=2_000_000, mode=0o664)
    write_tar_gz(tmp_path / "a.tar.gz", tree_members(first))
    write_tar_gz(tmp_path / "b.tar.gz", tree_members(second))
    assert _sha(tmp_path / "a.tar.gz") == _sha(tmp_path / "b.tar.gz")
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert list(members) == ["bin", "bin/tool", "lib", "lib/data.txt", "lib/link"]
    assert members["bin/tool"].mode == 0o755 and members["lib/data.txt"].mode == 0o644
    assert members["lib/link"].issym() and members["lib/link"].linkname == "data.txt"
    assert {(m.mtime, m.uid, m.gid, m.uname) for m in members.values()} == {(0, 0, 0, "")}


def test_gzip_header_has_no_name_or_time(tmp_path: Path) -> None:
    write_tar_gz(tmp_path / "x.tar.gz", [Member("f", "file", data=b"x")])
    header = (tmp_path / "x.tar.gz").read_bytes()[:10]
    assert header[3] & 0x08 == 0, "no FNAME field"
    assert header[4:8] == b"\0\0\0\0", "MTIME is zero"


def test_a_failed_write_leaves_no_archive(tmp_path: Path) -> None:
    def members() -> list[Member]:
        raise RuntimeError("source vanished")

    with pytest.raises(RuntimeError):
        write_tar_gz(tmp_path / "x.tar.gz", (member for member in members()))
    assert list(tmp_path.iterdir()) == []


def test_keep_filters_paths(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", 0, 0o644)
    (root / "lib" / "__pycache__").mkdir()
    (root / "lib" / "__pycache__" / "x.pyc").write_bytes(b"")
    names = [member.name for member in tree_members(root, "env", keep=lambda name: "__pycache__" not in name)]
    assert names == ["env/bin", "env/bin/tool", "env/lib", "env/lib/data.txt", "env/lib/link"]


def _archive(path: Path, *infos: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in infos:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    "info, message",
    [
        (_info("/etc/evil"), "outside the extraction directory"),
        (_info("a/../../evil"), "outside the extraction directory"),
        (_info("link", tarfile.SYMTYPE, "../../etc/passwd"), "links to '../../etc/passwd'"),
        (_info("abs", tarfile.SYMTYPE, "/etc/passwd"), "links to '/etc/passwd'"),
        (_info("hard", tarfile.LNKTYPE, "../outside"), "links to '../outside'"),
        (_info("dev", tarfile.CHRTYPE), "is not a file, directory or link"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(
    tmp_path: Path, info: tarfile.TarInfo, message: str
) -> None:
    archive = _archive(tmp_path / "bad.tar.gz", _info("fine.txt"), info)
    with pytest.raises(UnsafeArchive, match=message):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()


def test_absolute_symlinks_only_when_asked(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "env.tar.gz", _info("bin/python", tarfile.SYMTYPE, "/usr/bin/python3"))
    extract(archive, tmp_path / "env", absolute_symlinks=True)
    assert os.readlink(tmp_path / "env" / "bin" / "python") == "/usr/bin/python3"


def _pinned_members() -> list[Member]:
    rng = random.Random(20261127)
    return [
        Member("model", "dir"),
        Member("model/weights.bin", "file", data=rng.randbytes(3 * 1024 * 1024 + 17)),
        Member("model/config.pbtxt", "file", data=b'name: "model"\n' * 50000),
        Member("model/run.sh", "file", data=b"#!/bin/sh\n", executable=True),
        Member("model/link", "symlink", target="config.pbtxt"),
        Member("model/copy.bin", "hardlink", target="model/weights.bin"),
    ]


def test_tar_stream_and_gzip_bytes_are_pinned_whatever_the_thread_count(tmp_path: Path) -> None:
    """The archive's bytes depend on its members alone: not on the machine, the Python, or the threads that
    compressed it (fixed 1 MiB blocks, each compressed with the previous block's tail as dictionary)."""
    members = _pinned_members()
    written = write_tar_gz(tmp_path / "one.tar.gz", members, threads=1)
    write_tar_gz(tmp_path / "two.tar.gz", members, threads=3)
    stream = gzip.decompress((tmp_path / "one.tar.gz").read_bytes())
    assert hashlib.sha256(stream).hexdigest() == PINNED_TAR_STREAM
    assert _sha(tmp_path / "one.tar.gz") == _sha(tmp_path / "two.tar.gz") == PINNED_GZIP
    assert (written.sha256, written.size) == (
        _sha(tmp_path / "one.tar.gz"),
        (tmp_path / "one.tar.gz").stat().st_size,
    )
    assert written.files == {
        member.name: hashlib.sha256(member.data).hexdigest()
        for member in members
        if member.kind == "file" and member.data is not None
    }


def test_a_source_that_does_not_hold_its_size_leaves_no_archive(tmp_path: Path) -> None:
    """A file whose bytes differ in length from its size when read (here /proc's, which report 0) is an
    error: the archive would not hold what its header says."""
    with pytest.raises(OSError, match="changed while it was archived"):
        write_tar_gz(tmp_path / "x.tar.gz", [Member("status", "file", source=Path("/proc/self/status"))])
    assert list(tmp_path.iterdir()) == []


WRITE_PINNED = """
import sys
from pathlib import Path
from tests.test_archives import _pinned_members
from packager.archives import write_tar_gz
write_tar_gz(Path(sys.argv[1]), _pinned_members())
"""


@pytest.mark.parametrize("cpu", ["Haswell", "Nehalem"])
def test_older_cpus_write_the_same_bytes(tmp_path: Path, cpu: str) -> None:
    """The same writer under qemu-user emulating an AVX2-only CPU (Haswell) and an SSE4.2 one (Nehalem):
    ISA-L takes other code paths there, and writes the same bytes. `.ci/run` installs qemu-user (x86_64
    machines). The child imports only this module, never conftest's numpy, which needs a newer CPU."""
    from tests.conftest import child_environment

    qemu = shutil.which("qemu-x86_64")
    assert qemu, "this test needs qemu-user (apt-get install qemu-user); .ci/run installs it"
    environment = child_environment()
    out = tmp_path / f"{cpu}.tar.gz"
    subprocess.run(
        [qemu, "-cpu", cpu, sys.executable, "-c", WRITE_PINNED, str(out)],
        env=environment,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert hashlib.sha256(gzip.decompress(out.read_bytes())).hexdigest() == PINNED_TAR_STREAM
    assert _sha(out) == PINNED_GZIP
