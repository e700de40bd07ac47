"""Where each key and value of a TOML document is written, so that a configuration error names its line
and column.

`tomllib` parses without positions; this re-reads a document that already parsed, token by token (strings,
multi-line ones included, comments, arrays and inline tables at any depth), and records where every table
header, key and value starts. A key is addressed by its path: `("stores", "production_branches")`, an
array item (or an element of an array of tables) by its index: `("runtime", "x", "constraints", 1)`.
"""

from __future__ import annotations

import bisect
import re
import tomllib

KeyPath = tuple[str | int, ...]
Position = tuple[int, int]
# A key part: bare, a basic string (with escapes) or a literal string.
_PART = re.compile(r"[A-Za-z0-9_-]+|\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'")
# Where a string value ends: a basic one at an unescaped quote, a multi-line one at three or more quotes
# (up to two of them may belong to the string).
_ENDS = {
    '"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*"{3,5}', re.DOTALL),
    "'''": re.compile(r"(?:[^']|'(?!''))*'{3,5}"),
    '"': re.compile(r'(?:[^"\\\n]|\\.)*"'),
    "'": re.compile(r"[^'\n]*'"),
}
_SCALAR = re.compile(r"[^,\]}#\n]+")  # numbers, booleans, dates: none holds a comma, bracket, brace or #
_BLANK = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")  # whitespace, newlines and comments
_SPACE = re.compile(r"[ \t]*")


def _unquoted(part: str) -> str:
    """A key as tomllib reads it: a basic string's escapes decoded, a literal string's quotes dropped."""
    if part.startswith('"'):
        try:
            return str(tomllib.loads(f"key = {part}")["key"])
        except tomllib.TOMLDecodeError:
            return part[1:-1]
    return part[1:-1] if part.startswith("'") else part


class TomlPositions:
    """1-based (line, column) of the keys, values, tables and array items of one TOML document."""

    def __init__(self, text: str) -> None:
        self._text = text  # TOML's lines end at \n only; str.splitlines would also split at \x0c or \u2028
        self._starts = [0] + [match.end() for match in re.finditer("\n", text)]
        self._keys: dict[KeyPath, Position] = {}
        self._values: dict[KeyPath, Position] = {}
        self._tables: dict[KeyPath, int] = {}  # how many elements each array of tables has so far
        self._at = 0
        try:
            self._document()
        except RecursionError:  # nesting deeper than this reader goes: what it recorded stays
            pass

    def at(self, *path: str | int) -> Position | None:
        """Where the key `path` is written, or its nearest enclosing key or table that is."""
        return self._nearest(self._keys, path)

    def value_at(self, *path: str | int) -> Position | None:
        """Where the value of `path` starts, or that of its nearest enclosing key or table that is written."""
        return self._nearest(self._values, path)

    @staticmethod
    def _nearest(found: dict[KeyPath, Position], path: KeyPath) -> Position | None:
        for end in range(len(path), 0, -1):
            if path[:end] in found:
                return found[path[:end]]
        return None

    def _position(self, offset: int) -> Position:
        line = bisect.bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1

    def _record(self, path: KeyPath, key: int, value: int) -> None:
        self._keys.setdefault(path, self._position(key))
        self._values.setdefault(path, self._position(value))

    def _skip(self, pattern: re.Pattern[str]) -> int:
        """Move past what `pattern` matches here; where it started."""
        start = self._at
        match = pattern.match(self._text, start)
        self._at = match.end() if match else start + 1  # valid TOML always matches; never stand still
        return start

    def _document(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip(_BLANK)
            if self._at >= len(self._text):
                return
            if self._text.startswith("[", self._at):
                table = self._header()
            else:
                self._pair(table)

    def _header(self) -> KeyPath:
        """Read `[a.b]` or `[[a.b]]`; the path the keys under it belong to."""
        start, brackets = self._at, 2 if self._text.startswith("[[", self._at) else 1
        self._at += brackets
        *parents, (name, _) = self._key()
        path: KeyPath = ()
        for parent, _ in parents:
            path = (*path, parent)
            if path in self._tables:  # under an array of tables: its latest element
                path = (*path, self._tables[path] - 1)
        path = (*path, name)
        if brackets == 2:
            self._tables[path] = self._tables.get(path, 0) + 1
            path = (*path, self._tables[path] - 1)
        for end in range(1, len(path) + 1):
            self._record(path[:end], start, start)
        self._at += brackets
        return path

    def _key(self) -> list[tuple[str, int]]:
        """Read a (dotted) key and the whitespace after it: each part with its offset."""
        parts = []
        while True:
            self._skip(_SPACE)
            start = self._skip(_PART)
            parts.append((_unquoted(self._text[start : self._at]), start))
            self._skip(_SPACE)
            if not self._text.startswith(".", self._at):
                return parts
            self._at += 1

    def _pair(self, table: KeyPath) -> None:
        """Read `key = value` under `table`, recording each part of a dotted key and the value."""
        parts = self._key()
        path = table
        for name, offset in parts[:-1]:
            path = (*path, name)
            self._record(path, offset, offset)
        path = (*path, parts[-1][0])
        self._at += 1  # "="
        self._skip(_SPACE)
        self._record(path, parts[-1][1], self._at)
        self._value(path)

    def _value(self, path: KeyPath) -> None:
        text, at = self._text, self._at
        opening = next((quote for quote in _ENDS if text.startswith(quote, at)), None)
        if text.startswith(("[", "{"), at):
            self._sequence(path, "]" if text[at] == "[" else "}")
        elif opening is not None:
            self._at += len(opening)
            self._skip(_ENDS[opening])
        else:
            self._skip(_SCALAR)

    def _sequence(self, path: KeyPath, closing: str) -> None:
        """Read an array's items (by index) or an inline table's pairs, up to `closing`."""
        self._at += 1
        index = 0
        while True:
            self._skip(_BLANK)
            if self._at >= len(self._text) or self._text.startswith(closing, self._at):
                self._at += 1
                return
            if self._text.startswith(",", self._at):
                self._at, index = self._at + 1, index + 1
            elif closing == "}":
                self._pair(path)
            else:
                self._record((*path, index), self._at, self._at)
                self._value((*path, index))
