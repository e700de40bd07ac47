"""The validator corpus: each case directory is a model directory with the exact report it must get.

Every case's `case.toml` also records what a real Triton 2.51 did when loading it, so the corpus pins the
validator to Triton: a case Triton refuses must be reported, and a good case must pass.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from packager.modeldir import ModelDir
from packager.validation import validate_model

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(path.parent for path in CORPUS.glob("*/*/case.toml"))


def _case_id(case: Path) -> str:
    return f"{case.parent.name}/{case.name}"


def test_corpus_is_present() -> None:
    assert len([case for case in CASES if case.parent.name == "bad"]) >= 30
    assert len([case for case in CASES if case.parent.name == "good"]) >= 3


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_case_gets_exactly_its_expected_report(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tomllib.loads((case / "case.toml").read_text())
    monkeypatch.chdir(case)
    report = validate_model(ModelDir(case))
    assert [str(diagnostic) for diagnostic in report.diagnostics] == spec["expected"]
    assert report.ok == (case.parent.name == "good")
    # Good cases load in Triton; a bad case is refused by Triton or breaks a packaging rule it does not check.
    assert spec["triton"] in (("accepts",) if report.ok else ("accepts", "refuses"))
