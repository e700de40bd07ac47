"""Problems found in model directories, reported as `path:line:col: message`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Diagnostic:
    """One problem at a place in a file (line and column are 1-based, when known)."""

    path: Path
    line: int | None
    column: int | None
    message: str
    rule: str

    def location(self) -> str:
        """`path`, `path:line` or `path:line:col`, with the path relative to the cwd where it is below it."""
        parts = [display_path(self.path)]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        return f"{self.location()}: {self.message}"

    def to_json(self) -> dict[str, object]:
        """The diagnostic as a JSON-ready dict."""
        return {
            "path": display_path(self.path),
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "rule": self.rule,
        }


def display_path(path: Path) -> str:
    """`path` relative to the current directory when it lies below it, else as given."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return os.fspath(path)
