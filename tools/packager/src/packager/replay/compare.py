"""Comparing what a server returned with what a case expects, and saying what differs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
from tritonclient.utils import np_to_triton_dtype

from packager.modeldir import Stream, Tensor
from packager.tables import plural

MAX_SHOWN = 3
MAX_WRITTEN = 64
MAX_RESPONSES_WRITTEN = 16


def compare(expected: Tensor, got: np.ndarray | None) -> list[str]:
    """What is wrong with `got` as the output `expected` describes (nothing when it matches)."""
    name = expected.name
    if got is None:
        return [f"{name}: missing from the response"]
    if not expected.written:
        return [f"{name}: the case does not give the expected values yet (data is null); got {_written(got)}"]
    if list(got.shape) != expected.shape:
        return [f"{name}: expected shape {expected.shape}, got {list(got.shape)} ({_show(got)})"]
    if expected.datatype == "BYTES":
        wrong = np.array(
            [bytes(a) != bytes(b) for a, b in zip(expected.data.reshape(-1), got.reshape(-1), strict=False)]
        )
    else:
        want, have = expected.data.astype(np.float64), got.astype(np.float64)
        tolerance = expected.tolerance
        wrong = ~np.isclose(
            have, want, atol=tolerance.absolute, rtol=tolerance.relative, equal_nan=True
        ).reshape(-1)
    if not wrong.any():
        return []
    indexes = np.flatnonzero(wrong)
    shown = [_difference(expected, got, int(index)) for index in indexes[:MAX_SHOWN]]
    more = f" and {len(indexes) - MAX_SHOWN} more" if len(indexes) > MAX_SHOWN else ""
    return [f"{name}: {len(indexes)} of {wrong.size} values differ: " + "; ".join(shown) + more]


def compare_stream(expected: Stream, got: Sequence[Mapping[str, np.ndarray]]) -> list[str]:
    """What is wrong with the responses a decoupled model sent before its final flag, as `expected` lists
    them: each response's outputs (prefixed with the response's index), then too few or too many."""
    if not expected.written:
        return [
            f'the case does not give its responses yet ("responses" is null); got {plural(len(got), "response")}: '
            f'"responses": {_written_responses(got)}'
        ]
    problems = [
        f"response {index}: {problem}"
        for index, (wanted, have) in enumerate(zip(expected.responses, got, strict=False))
        for tensor in wanted
        for problem in compare(tensor, have.get(tensor.name))
    ]
    want, have = len(expected.responses), len(got)
    if have < want:
        missing = (
            f"response {have} never came" if want - have == 1 else f"responses {have}..{want - 1} never came"
        )
        problems.append(f"expected {want} responses before the final flag, got {have}: {missing}")
    elif have > want:
        extra = (
            f"{plural(have - want, 'extra response')} from response {want}: {_written_responses(got[want:])}"
        )
        problems.append(f"expected {want} responses before the final flag, got {have}; the {extra}")
    return problems


def _written_responses(responses: Sequence[Mapping[str, np.ndarray]]) -> str:
    """Responses as a case's "responses" list writes them, to paste once checked; long streams shortened."""
    written = [
        "{"
        + '"outputs": ['
        + ", ".join(
            f'{{"name": {json.dumps(name)}, "datatype": "{np_to_triton_dtype(array.dtype)}", {_written(array)}}}'
            for name, array in outputs.items()
        )
        + "]}"
        for outputs in responses[:MAX_RESPONSES_WRITTEN]
    ]
    more = ", ..." if len(responses) > MAX_RESPONSES_WRITTEN else ""
    return "[" + ", ".join(written) + more + "]"


def _difference(expected: Tensor, got: np.ndarray, flat_index: int) -> str:
    position = [int(index) for index in np.unravel_index(flat_index, got.shape)]
    want, have = expected.data.reshape(-1)[flat_index], got.reshape(-1)[flat_index]
    if expected.datatype == "BYTES":
        return f"{position} expected {bytes(want)!r}, got {bytes(have)!r}"
    tolerance = f" {expected.tolerance}" if expected.tolerance.absolute or expected.tolerance.relative else ""
    return f"{position} expected {str(want)}{tolerance}, got {str(have)}"  # str: numpy's shortest repr


def _written(array: np.ndarray) -> str:
    """`array` as a case writes it (shape and data), to paste once checked; long ones shortened."""
    values = [
        value.decode(errors="replace") if isinstance(value, bytes) else value
        for value in array.reshape(-1).tolist()
    ]
    shown = json.dumps(values[:MAX_WRITTEN])[:-1] + (", ...]" if len(values) > MAX_WRITTEN else "]")
    return f'"shape": {list(array.shape)}, "data": {shown}'


def _show(array: np.ndarray) -> str:
    text = np.array2string(array.reshape(-1)[:6], separator=", ")
    return text if array.size <= 6 else text[:-1] + ", ...]"
