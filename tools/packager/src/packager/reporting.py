"""How the library says what it is doing: a `Report` takes one line of progress at a time. The library
says nothing unless its caller passes a report (`silent` is every default); the CLI passes `to_stderr`,
or `silent` under `--json`."""

from __future__ import annotations

import sys
from collections.abc import Callable

Report = Callable[[str], None]


def silent(line: str) -> None:
    """Say nothing."""


def to_stderr(line: str) -> None:
    """The line on stderr, at once (stdout stays for what a command outputs)."""
    print(line, file=sys.stderr, flush=True)
