"""Byte-reproducible archives, and extraction that keeps every member inside its directory."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
import random

from packager.archives import Member, UnsafeArchive, extract, tree_members, write_tar_gz

PINNED = "62075a498d66ed0f4b9640747ad1d6cfa6dfef900800d83c9da5f2b31fea0ed8"


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


def test_bytes_are_pinned_across_python_versions_and_machines(tmp_path: Path) -> None:
    """A pinned digest: CPython 3.11.7 and 3.12.1 both write exactly these bytes (the gzip stream is fed
    in fixed chunks, because ISA-L's output depends on how its input is split and Python 3.12's GzipFile
    splits writes differently). The same writer also gave identical archives on another machine."""
    rng = random.Random(20261127)
    members = [
        Member("model", "dir"),
        Member("model/weights.bin", "file", data=rng.randbytes(3 * 1024 * 1024 + 17)),
        Member("model/config.pbtxt", "file", data=b'name: "model"\n' * 50000),
        Member("model/run.sh", "file", data=b"#!/bin/sh\n", executable=True),
        Member("model/link", "symlink", target="config.pbtxt"),
        Member("model/copy.bin", "hardlink", target="model/weights.bin"),
    ]
    write_tar_gz(tmp_path / "pinned.tar.gz", members)
    assert _sha(tmp_path / "pinned.tar.gz") == PINNED
