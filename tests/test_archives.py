"""Reproducible archives (the tar stream everywhere, the gzip bytes per CPU family), and extraction that
keeps every member inside its directory."""

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
# checked). The gzip bytes around it are ISA-L's, which differ between CPU families (AVX-512 vs AVX2).
PINNED_TAR_STREAM = "5e975d1c74e506c07f7432bcfa16089ba80fc40d34621f87f7b3fca5397715f5"
# The gzip bytes of the same members on an AVX2-only CPU (what an AMD EPYC without AVX-512 wrote in CI).
PINNED_AVX2_GZIP = "42a91297223063094aaf74c4dd2170d18bea2053b10b10e21ffbbfd0bd82b186"


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


def test_tar_stream_is_pinned_everywhere_and_gzip_bytes_repeat(tmp_path: Path) -> None:
    """What holds on every machine is pinned: the tar stream (ISA-L's gzip bytes depend on the CPU family,
    so the archive's own sha256 is only compared between two writes here, fed in fixed chunks because
    ISA-L's output also depends on how its input is split)."""
    members = _pinned_members()
    write_tar_gz(tmp_path / "one.tar.gz", members)
    write_tar_gz(tmp_path / "two.tar.gz", members)
    stream = gzip.decompress((tmp_path / "one.tar.gz").read_bytes())
    assert hashlib.sha256(stream).hexdigest() == PINNED_TAR_STREAM
    assert _sha(tmp_path / "one.tar.gz") == _sha(tmp_path / "two.tar.gz")


WRITE_PINNED = """
import sys
from pathlib import Path
from tests.test_archives import _pinned_members
from packager.archives import write_tar_gz
write_tar_gz(Path(sys.argv[1]), _pinned_members())
"""


def test_an_avx2_cpu_writes_its_own_gzip_bytes_around_the_same_tar_stream(tmp_path: Path) -> None:
    """The same writer under qemu-user emulating an AVX2-only CPU (Haswell): ISA-L takes another code path,
    so the compressed bytes are that family's own, while the tar stream, the artifact's identity, is the
    one pinned above. `.ci/run` installs qemu-user (x86_64 machines)."""
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "this test needs qemu-user (apt-get install qemu-user); .ci/run installs it"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(entry) for entry in sys.path)}
    out = tmp_path / "avx2.tar.gz"
    subprocess.run(
        [qemu, "-cpu", "Haswell", sys.executable, "-c", WRITE_PINNED, str(out)],
        env=environment,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert hashlib.sha256(gzip.decompress(out.read_bytes())).hexdigest() == PINNED_TAR_STREAM
    assert _sha(out) == PINNED_AVX2_GZIP
