"""Replays this model's cases (tests/cases/*.json) through a real Triton, as `packager replay` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.testing import case_ids, check_case

MODEL = Path(__file__).parent.parent


@pytest.mark.parametrize("case", case_ids(MODEL))
def test_case(case: str) -> None:
    check_case(MODEL, case)
