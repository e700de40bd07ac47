"""Weights tracked by DVC: a missing or altered file is named with the command that fixes it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from packager.modeldir import ModelDir, check_weights, pointers, weights

CHURN = Path(__file__).parent.parent / "models" / "churn"


@pytest.fixture
def churn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelDir:
    shutil.copytree(CHURN, tmp_path / "churn", ignore=shutil.ignore_patterns("python_env.tar.gz"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PACKAGER_DVC", "dvc")
    return ModelDir(tmp_path / "churn")


def test_intact_weights_pass(churn: ModelDir) -> None:
    assert [pointer.name for pointer in pointers(churn)] == ["model.onnx.dvc"]
    assert [weight.path.name for weight in weights(churn)] == ["model.onnx"]
    assert check_weights(churn) == []


def test_missing_weight_names_the_pull_command(churn: ModelDir) -> None:
    (churn.path / "churn" / "1" / "model.onnx").unlink()
    assert [str(problem) for problem in check_weights(churn)] == [
        "churn/churn/1/model.onnx: missing (tracked by DVC): fetch it with `dvc pull churn/churn/1/model.onnx.dvc`"
    ]


def test_altered_weight_names_checkout_and_dvc_add(churn: ModelDir) -> None:
    weight = churn.path / "churn" / "1" / "model.onnx"
    weight.write_bytes(weight.read_bytes()[:-1] + b"\0")
    (problem,) = check_weights(churn)
    assert str(problem).startswith("churn/churn/1/model.onnx: does not match its DVC pointer (md5 ")
    assert "pointer says 2db8a36e9b9716dda4ee5faedb5a6d59" in problem.message
    assert "`dvc checkout --force churn/churn/1/model.onnx.dvc`" in problem.message
    assert "record it with `dvc add`" in problem.message
