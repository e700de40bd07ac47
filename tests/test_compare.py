"""How replay compares what Triton returned with a case's expected outputs, and how it says so."""

from __future__ import annotations

import numpy as np

from packager.modeldir import Tensor, Tolerance
from packager.replay import compare


def _expected(data: object, datatype: str = "FP32", absolute: float = 0.0, relative: float = 0.0) -> Tensor:
    dtype = np.object_ if datatype == "BYTES" else np.float32 if datatype == "FP32" else np.int64
    return Tensor("OUT", datatype, np.array(data, dtype=dtype), Tolerance(absolute, relative))


def test_within_tolerance_passes() -> None:
    assert compare(_expected([[0.5, 1.0]], absolute=0.01), np.array([[0.505, 0.999]], dtype=np.float32)) == []
    assert compare(_expected([[100.0]], relative=0.01), np.array([[100.9]], dtype=np.float32)) == []


def test_outside_tolerance_shows_expected_and_got() -> None:
    problems = compare(_expected([[0.93, 0.5]], absolute=0.01), np.array([[0.41, 0.5]], dtype=np.float32))
    assert len(problems) == 1
    assert problems[0].startswith("OUT: 1 of 2 values differ: [0, 0] expected 0.93")
    assert "±0.01, got 0.41" in problems[0]


def test_exact_by_default_for_integers() -> None:
    assert compare(_expected([[3]], "INT64"), np.array([[3]])) == []
    assert compare(_expected([[3]], "INT64"), np.array([[5]])) == [
        "OUT: 1 of 1 values differ: [0, 0] expected 3, got 5"
    ]


def test_many_differences_are_summarized() -> None:
    problems = compare(_expected(list(range(10)), "INT64"), np.arange(10) + 1)
    assert problems == [
        "OUT: 10 of 10 values differ: [0] expected 0, got 1; [1] expected 1, got 2; [2] expected 2, got 3 and 7 more"
    ]


def test_shape_bytes_and_missing() -> None:
    assert compare(_expected([[1.0, 2.0]]), np.array([1.0, 2.0])) == [
        "OUT: expected shape [1, 2], got [2] ([1., 2.])"
    ]
    assert compare(_expected([[b"a"]], "BYTES"), np.array([[b"b"]], dtype=np.object_)) == [
        "OUT: 1 of 1 values differ: [0, 0] expected b'a', got b'b'"
    ]
    assert compare(_expected([[1.0]]), None) == ["OUT: missing from the response"]
