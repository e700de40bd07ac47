"""Which directories are models, and how command-line arguments name them."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.errors import UsageError
from packager.modeldir import ModelDir, discover_models, find_repo_root, models_under, version_dirs


def _model(path: Path, *triton_models: str) -> Path:
    path.mkdir(parents=True)
    (path / "model_version.txt").write_text("1\n")
    for name in triton_models:
        (path / name / "1").mkdir(parents=True)
        (path / name / "config.pbtxt").write_text('backend: "python"\n')
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "pants.toml").write_text("")
    _model(tmp_path / "models" / "digits", "preprocess", "classifier")
    _model(tmp_path / "models" / "team" / "churn", "churn")
    (tmp_path / "models" / ".hidden").mkdir()
    _model(tmp_path / "models" / ".hidden" / "ignored")
    return tmp_path


def test_repo_root_is_found_from_below(repo: Path) -> None:
    assert find_repo_root(repo / "models" / "digits" / "preprocess") == repo
    assert find_repo_root(Path("/")) is None


def test_all_models_by_default_nested_ones_included_hidden_ones_not(repo: Path) -> None:
    names = [model.name for model in discover_models([], repo)]
    assert names == ["digits", "churn"]


def test_names_and_paths_resolve_to_the_same_models_without_duplicates(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo / "models")
    models = discover_models(["digits", "./digits", str(repo / "models" / "digits"), "team"], repo)
    assert models == [ModelDir(repo / "models" / "digits"), ModelDir(repo / "models" / "team" / "churn")]


def test_a_model_inside_a_model_is_part_of_it(repo: Path) -> None:
    _model(repo / "models" / "digits" / "tests" / "fixture_model")
    assert [model.name for model in models_under(repo / "models")] == ["digits", "churn"]


def test_triton_model_dirs_skip_tests_and_hidden_dirs(repo: Path) -> None:
    digits = ModelDir(repo / "models" / "digits")
    (digits.path / "tests").mkdir()
    (digits.path / ".cache" / "1").mkdir(parents=True)
    assert [path.name for path in digits.triton_model_dirs()] == ["classifier", "preprocess"]


def test_version_dirs_are_numbers_without_leading_zeros(tmp_path: Path) -> None:
    for name in ("1", "10", "2", "01", "latest", "0"):
        (tmp_path / name).mkdir()
    (tmp_path / "3").write_text("a file, not a version")
    assert sorted(version_dirs(tmp_path)) == [0, 1, 2, 10]


@pytest.mark.parametrize(
    "arg, message",
    [
        ("nope", "nope: no such model under"),
        ("./nope", "./nope: not a directory"),
        ("pants.toml", "pants.toml: not a directory"),
    ],
)
def test_arguments_that_name_no_model(
    repo: Path, monkeypatch: pytest.MonkeyPatch, arg: str, message: str
) -> None:
    monkeypatch.chdir(repo)
    with pytest.raises(UsageError, match=message):
        discover_models([arg], repo)


def test_names_need_a_repo_but_paths_do_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(tmp_path / "anywhere" / "churn", "churn")
    monkeypatch.chdir(tmp_path)
    assert discover_models(["anywhere"], None) == [ModelDir(model)]
    with pytest.raises(UsageError, match="churn: no such model"):
        discover_models(["churn"], None)
    with pytest.raises(UsageError, match="not inside a model monorepo"):
        discover_models([], None)
