"""Rules on files that a committed corpus cannot hold well: symlinks, and odd version files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from packager.modeldir import ModelDir
from packager.validation import validate_model

GOOD = Path(__file__).parent / "corpus" / "good" / "single_python"


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "scorer_model"
    shutil.copytree(GOOD, path)
    monkeypatch.chdir(path)
    return path


def _report(model: Path) -> list[str]:
    return [str(diagnostic) for diagnostic in validate_model(ModelDir(model)).diagnostics]


def test_copied_good_model_is_clean(model: Path) -> None:
    assert _report(model) == []


def test_symlink_leaving_the_model_directory(model: Path, tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8)
    os.symlink(tmp_path / "weights.bin", model / "scorer" / "1" / "weights.bin")
    assert _report(model) == [
        f"scorer/1/weights.bin: symlink leaves the model directory (to {tmp_path / 'weights.bin'}); "
        "the packaged model would not hold it: copy the file into the model directory"
    ]


def test_relative_symlink_escaping_through_dotdot(model: Path) -> None:
    os.symlink("../../../outside", model / "scorer" / "1" / "data")
    (model.parent / "outside").mkdir()
    assert len(_report(model)) == 1 and "symlink leaves the model directory" in _report(model)[0]


def test_dangling_symlink(model: Path) -> None:
    os.symlink("missing.onnx", model / "scorer" / "1" / "model.onnx")
    assert _report(model) == [
        "scorer/1/model.onnx: symlink to missing.onnx dangles; remove it or restore its target"
    ]


def test_symlink_inside_the_model_directory_is_fine(model: Path) -> None:
    os.symlink("../1/model.py", model / "scorer" / "1" / "alias.py")
    assert _report(model) == []


@pytest.mark.parametrize("content", [b"2\n", b" 12 \n", b"3"])
def test_version_file_accepts_a_positive_integer(model: Path, content: bytes) -> None:
    (model / "model_version.txt").write_bytes(content)
    report = validate_model(ModelDir(model))
    assert report.ok and report.version == int(content)


@pytest.mark.parametrize(
    "content, shown",
    [(b"", "''"), (b"1.2\n", "'1.2'"), (b"-3\n", "'-3'"), (b"007\n", "'007'"), (b"1\n2\n", "'1\\n2'")],
)
def test_version_file_rejects_anything_else(model: Path, content: bytes, shown: str) -> None:
    (model / "model_version.txt").write_bytes(content)
    assert _report(model) == [
        f"model_version.txt:1:1: must hold one positive integer without leading zeros, such as 1; found {shown}"
    ]


def test_version_file_not_utf8(model: Path) -> None:
    (model / "model_version.txt").write_bytes(b"1\xff\n")
    assert _report(model) == ["model_version.txt:1:2: not UTF-8 text (byte 0xff); save the file as UTF-8"]
