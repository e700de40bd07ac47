"""Where each key of a TOML document is written, so that a configuration error names its line and column.

`tomllib` parses without positions; this re-reads a document that already parsed and records the position
of every table header, every `key =`, and every item of an inline array. A key is addressed by its path:
`("stores", "production_branches")`, and an array item by its index: `("runtime", "x", "constraints", 1)`.
"""

from __future__ import annotations

import re
import tomllib

KeyPath = tuple[str | int, ...]
# A key: bare, a basic string (with escapes) or a literal string; dotted keys join them with dots.
_PART = r"[A-Za-z0-9_-]+|\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'"
_DOTTED = rf"(?:{_PART})(?:[ \t]*\.[ \t]*(?:{_PART}))*"
_HEADER = re.compile(rf"\[\[?[ \t]*(?P<name>{_DOTTED})[ \t]*\]\]?")
_KEY = re.compile(rf"(?P<key>{_DOTTED})[ \t]*=")


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(_unquoted(part) for part in re.findall(_PART, text))


def _unquoted(part: str) -> str:
    """A key as tomllib reads it: a basic string's escapes decoded, a literal string's quotes dropped."""
    if part.startswith('"'):
        try:
            return str(tomllib.loads(f"key = {part}")["key"])
        except tomllib.TOMLDecodeError:
            return part[1:-1]
    return part[1:-1] if part.startswith("'") else part


class TomlPositions:
    """1-based (line, column) of the keys, tables and array items of one TOML document."""

    def __init__(self, text: str) -> None:
        self._positions: dict[KeyPath, tuple[int, int]] = {}
        self._lines = text.split("\n")  # TOML's lines; str.splitlines would also split at \x0c or \u2028
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
                if quote == '"' and char == "\\":
                    column += 1  # the escaped character cannot end the string
                elif quote:
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
