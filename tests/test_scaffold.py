"""`packager new`: the scaffold validates as it is and refuses bad names (replay: test_replay_real.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.errors import UsageError
from packager.modeldir import ModelDir, load_cases, scaffold
from packager.validation import validate_model


def test_scaffold_with_its_lock_passes_validation_and_its_cases_load(
    tmp_path: Path, scaffold_lock: str
) -> None:
    model = scaffold(tmp_path, "fraud-score")
    assert [str(problem) for problem in validate_model(ModelDir(model)).diagnostics] == [
        f"{model / 'requirements.txt'}: has no requirements.lock beside it: run `packager lock fraud-score` "
        "and commit both files"
    ], "`packager new` locks what it scaffolds"
    (model / "requirements.lock").write_text(scaffold_lock)
    report = validate_model(ModelDir(model))
    assert report.ok, report.diagnostics
    assert sorted(report.triton_models) == ["fraud-score", "postprocess", "preprocess"]
    assert [case.id for case in load_cases(model, report.triton_models, "fraud-score")] == [
        "batch_of_two",
        "midrange",
    ]
    assert 'python_tests(\n    name="tests"' in (model / "BUILD").read_text()


@pytest.mark.parametrize(
    "name, message", [("bad name", "may hold only"), ("preprocess", "taken by one of its own steps")]
)
def test_bad_names_are_refused(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        scaffold(tmp_path, name)


def test_an_existing_directory_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        scaffold(tmp_path, "taken")
