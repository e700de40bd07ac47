"""Where each key of a TOML document is written, so that a configuration error names its line and column.

`tomllib` parses without positions; this re-reads a document that already parsed and records the position
of every table header, every `key =`, and every item of an inline array. A key is addressed by its path:
`("stores", "production_branches")`, and an array item by its index: `("runtime", "x", "constraints", 1)`.
"""

from __future__ import annotations

import re

KeyPath = tuple[str | int, ...]
_HEADER = re.compile(r"\[\[?\s*(?P<name>[^\]]+?)\s*\]\]?")
_KEY = re.compile(
    r"(?P<key>(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)


def _dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)", text)
    return tuple(next(part for part in groups if part) for groups in parts)


class TomlPositions:
    """1-based (line, column) of the keys, tables and array items of one TOML document."""

    def __init__(self, text: str) -> None:
        self._positions: dict[KeyPath, tuple[int, int]] = {}
        self._lines = text.splitlines()
        table: tuple[str, ...] = ()
        number = 0
        while number < len(self._lines):
            line = self._lines[number]
            stripped = line.lstrip()
            column = len(line) - len(stripped) + 1
            header = _HEADER.match(stripped)
            key = _KEY.match(stripped)
            if header:
                table = _dotted(header.group("name"))
                for end in range(1, len(table) + 1):
                    self._positions.setdefault(table[:end], (number + 1, column))
            elif key:
                path = (*table, *_dotted(key.group("key")))
                self._positions.setdefault(path, (number + 1, column))
                number = self._array_items(path, number, column - 1 + key.end())
                continue
            number += 1

    def _array_items(self, path: tuple[str, ...], number: int, offset: int) -> int:
        """Record the items of an array value starting at `offset` of line `number`; the next line to read."""
        line = self._lines[number]
        value = line[offset:].lstrip()
        if not value.startswith("["):
            return number + 1
        column = len(line) - len(value)
        depth, index, quote, expecting = 0, 0, "", True
        while number < len(self._lines):
            text = self._lines[number]
            while column < len(text):
                char = text[column]
                if quote:
                    quote = "" if char == quote else quote
                elif char in "\"'":
                    quote = char
                    if depth == 1 and expecting:
                        self._positions.setdefault((*path, index), (number + 1, column + 1))
                        expecting = False
                elif char == "#":
                    break
                elif char in "[{":
                    if depth == 1 and expecting:
                        self._positions.setdefault((*path, index), (number + 1, column + 1))
                        expecting = False
                    depth += 1
                elif char in "]}":
                    depth -= 1
                    if depth == 0:
                        return number + 1
                elif char == "," and depth == 1:
                    index, expecting = index + 1, True
                elif depth == 1 and expecting and not char.isspace():
                    self._positions.setdefault((*path, index), (number + 1, column + 1))
                    expecting = False
                column += 1
            number, column = number + 1, 0
        return number

    def at(self, *path: str | int) -> tuple[int, int] | None:
        """Where `path` is written, or its nearest enclosing key or table that is."""
        for end in range(len(path), 0, -1):
            found = self._positions.get(tuple(path[:end]))
            if found is not None:
                return found
        return None
