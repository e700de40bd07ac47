"""Where each field of a protobuf text-format document sits, for messages that name a line and column.

protobuf's Python `text_format` parses without keeping positions, so this module re-reads a document that
already parsed and records the position of every field occurrence. A field is addressed by a path that
alternates field names and occurrence indexes: `("input", 1, "dims", 0)` is the first dims value of the
second input; `("max_batch_size", 0)` is the only max_batch_size.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

FieldPath = tuple[str | int, ...]

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<word>[A-Za-z0-9_.+-]+)
    | (?P<punct>[{}\[\]<>:,;])
    """,
    re.VERBOSE,
)
_CLOSING = {"{": "}", "<": ">"}


@dataclass(frozen=True)
class Position:
    """A 1-based line and column, and the scalar value written there (unquoted; "" for a message)."""

    line: int
    column: int
    value: str = ""


@dataclass(frozen=True)
class _Token:
    text: str
    line: int
    column: int


def _tokens(text: str) -> Iterator[_Token]:
    line, line_start = 1, 0
    for match in _TOKEN.finditer(text):
        kind, token = match.lastgroup, match.group()
        if kind != "space":
            yield _Token(token, line, match.start() - line_start + 1)
        newlines = token.count("\n")
        if newlines:
            line += newlines
            line_start = match.start() + token.rindex("\n") + 1


def integer_position(text: str, number: int) -> Position | None:
    """Where the first integer token of `text` that equals `number` is written (in decimal or 0x hex)."""
    for token in _tokens(text):
        try:
            value = int(token.text, 0)
        except ValueError:  # not an integer
            continue
        if value == number:
            return Position(token.line, token.column, token.text)
    return None


class FieldPositions:
    """Positions of the fields of one text-format document."""

    def __init__(self, text: str) -> None:
        self._positions: dict[FieldPath, Position] = {}
        self._tokens = list(_tokens(text))
        self._next = 0
        self._read_message((), closing=None)

    def at(self, *path: str | int) -> Position | None:
        """Position of the field at `path`, or of its nearest enclosing field that is written down."""
        for end in range(len(path), 0, -1):
            found = self._positions.get(tuple(path[:end]))
            if found is not None:
                return found
        return None

    def map_entry(self, *field: str | int, key: str) -> int | None:
        """Occurrence index of the entry of the map at `field` whose key is written as `key`, if any."""
        index = 0
        while (*field, index) in self._positions:
            found = self._positions.get((*field, index, "key", 0))
            if found is not None and found.value == key:
                return index
            index += 1
        return None

    # The reader below trusts the document's syntax: it is only used on text that protobuf parsed.

    def _peek(self) -> str | None:
        return self._tokens[self._next].text if self._next < len(self._tokens) else None

    def _take(self) -> _Token:
        token = self._tokens[self._next]
        self._next += 1
        return token

    def _skip(self, *texts: str) -> None:
        while self._peek() in texts:
            self._next += 1

    def _read_message(self, path: FieldPath, closing: str | None) -> None:
        occurrences: defaultdict[str, int] = defaultdict(int)
        while self._peek() not in (closing, None):
            name = self._take()
            self._skip(":")
            if self._peek() == "[":
                self._take()
                while self._peek() != "]":
                    self._read_value(path, name, occurrences, in_list=True)
                    self._skip(",")
                self._take()
            else:
                self._read_value(path, name, occurrences, in_list=False)
            self._skip(",", ";")
        if closing is not None:
            self._take()

    def _read_value(
        self, path: FieldPath, name: _Token, occurrences: defaultdict[str, int], in_list: bool
    ) -> None:
        field = (*path, name.text, occurrences[name.text])
        occurrences[name.text] += 1
        if self._peek() in _CLOSING:
            opening = self._take()
            anchor = opening if in_list else name  # a list element is found by its brace, a block by its name
            self._positions[field] = Position(anchor.line, anchor.column)
            self._read_message(field, _CLOSING[opening.text])
            return
        value = self._take()
        text = value.text
        while _is_string(text) and _is_string(self._peek()):
            text = text[:-1] + self._take().text[1:]  # adjacent strings concatenate
        self._positions[field] = Position(value.line, value.column, text[1:-1] if _is_string(text) else text)


def _is_string(token: str | None) -> bool:
    return token is not None and token[:1] in ("'", '"')
