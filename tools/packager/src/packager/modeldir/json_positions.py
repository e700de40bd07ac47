"""Where each value of a JSON document starts, by its path of keys and indexes, for located errors."""

from __future__ import annotations

import json
import re

Path = tuple[str | int, ...]
_SPACE = re.compile(r"[ \t\n\r]*")
_SCANNER = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # public, untyped in typeshed


def value_offsets(text: str, depth: int = 4) -> dict[Path, int]:
    """The offset of every value down to `depth` levels in `text`, which must be valid JSON (parse it
    with `json.loads` first); deeper values are skipped whole."""
    offsets: dict[Path, int] = {}
    _value(text, 0, (), depth, offsets)
    return offsets


def line_column(text: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of `offset` in `text`."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _skip(text: str, index: int) -> int:
    match = _SPACE.match(text, index)
    return match.end() if match else index


def _value(text: str, index: int, path: Path, depth: int, offsets: dict[Path, int]) -> int:
    """Record the value at `index` (and, within `depth`, its members); the offset just past it."""
    index = _skip(text, index)
    offsets[path] = index
    opening = text[index]
    if depth == 0 or opening not in "[{":
        return int(_SCANNER(text, index)[1])
    closing = "]" if opening == "[" else "}"
    index = _skip(text, index + 1)
    if text[index] == closing:
        return index + 1
    position = 0
    while True:
        key: str | int = position
        if opening == "{":
            key, index = json.decoder.scanstring(text, _skip(text, index) + 1)  # type: ignore[attr-defined]
            index = _skip(text, index) + 1  # past ':'
        index = _skip(text, _value(text, index, (*path, key), depth - 1, offsets))
        if text[index] == closing:
            return index + 1
        index, position = index + 1, position + 1  # past ','
