"""Case files: the KServe v2 JSON shape, payload files, tolerances, and errors that name the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from packager.modeldir import Case, CaseError, load_cases
from packager.modeldir import ModelDir
from packager.modeldir import TritonModel
from packager.validation import validate_model

MODELS = Path(__file__).parent.parent / "models"


@pytest.fixture
def digits(tmp_path: Path) -> tuple[Path, dict[str, TritonModel]]:
    model = tmp_path / "digits"
    shutil.copytree(MODELS / "digits", model, ignore=shutil.ignore_patterns("python_env.tar.gz"))
    return model, validate_model(ModelDir(model)).triton_models


def _load(model: Path, triton_models: dict[str, TritonModel]) -> list[Case]:
    return load_cases(model, triton_models, "digits")


def test_repository_cases_load(digits: tuple[Path, dict[str, TritonModel]]) -> None:
    model, triton_models = digits
    cases = _load(model, triton_models)
    assert len(cases) == 13
    batch = next(case for case in cases if case.id == "batch_of_three")
    image = batch.inputs[0]
    assert (image.name, image.datatype, image.shape) == ("IMAGE", "BYTES", [3, 1])
    assert bytes(image.data[0, 0]).startswith(b"\x89PNG")
    label, confidence = batch.outputs
    assert label.data.dtype == np.int64 and label.data.tolist() == [[1], [4], [9]]
    assert confidence.tolerance.absolute == 0.01


def _write(model: Path, name: str, document: object) -> Path:
    path = model / "tests" / "cases" / f"{name}.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


GOOD_OUTPUT = {"name": "LABEL", "datatype": "INT64", "shape": [1, 1], "data": [3]}
GOOD_INPUT = {"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "data": ["not really a png"]}


@pytest.mark.parametrize(
    "document, message",
    [
        ('{"inputs": [\n  {"name": }]}', "broken.json:2:12: is not valid JSON: Expecting value"),
        ({"inputs": [GOOD_INPUT], "outputs": []}, 'needs a non-empty "outputs" list'),
        (
            {"model": "nope", "inputs": [GOOD_INPUT], "outputs": [GOOD_OUTPUT]},
            "calls model 'nope', which is not in digits/",
        ),
        (
            {"inputs": [{**GOOD_INPUT, "name": "IMG"}], "outputs": [GOOD_OUTPUT]},
            "input 'IMG' is not an input of model 'digits' (IMAGE)",
        ),
        (
            {"inputs": [{**GOOD_INPUT, "datatype": "FP32", "data": [1.0]}], "outputs": [GOOD_OUTPUT]},
            "input 'IMAGE' is BYTES in digits's config, not FP32",
        ),
        (
            {"inputs": [{**GOOD_INPUT, "shape": [1, 2], "data": ["a", "b"]}], "outputs": [GOOD_OUTPUT]},
            "shape [1, 2] does not match dims [1] after the batch dimension",
        ),
        (
            {"inputs": [{**GOOD_INPUT, "shape": [2, 1]}], "outputs": [GOOD_OUTPUT]},
            "inputs[0] has 1 values, but shape [2, 1] holds 2",
        ),
        (
            {
                "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "files": ["missing.png"]}],
                "outputs": [GOOD_OUTPUT],
            },
            "file 'missing.png' does not exist next to the case",
        ),
        (
            {"inputs": [GOOD_INPUT], "outputs": [{**GOOD_OUTPUT, "data": ["three"]}]},
            "outputs[0] data does not fit INT64",
        ),
        (
            {"inputs": [GOOD_INPUT], "outputs": [{**GOOD_OUTPUT, "tolerance": {"abs": 1}}]},
            'tolerance is {"absolute": A, "relative": R}',
        ),
        (
            {"inputs": [GOOD_INPUT], "outputs": [{**GOOD_OUTPUT, "datatype": "INT65"}]},
            "datatype 'INT65' is not one of",
        ),
    ],
)
def test_bad_case_files_are_reported_with_their_path(
    digits: tuple[Path, dict[str, TritonModel]], document: object, message: str
) -> None:
    model, triton_models = digits
    path = _write(model, "broken", document)
    with pytest.raises(CaseError) as error:
        _load(model, triton_models)
    assert len(error.value.diagnostics) == 1
    diagnostic = error.value.diagnostics[0]
    assert diagnostic.path == path
    assert message in f"{path.name}:{diagnostic.line}:{diagnostic.column}: {diagnostic.message}"
