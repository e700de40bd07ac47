"""Running the external tools the packager drives (pip, venv, conda, DVC), with their output on failure."""

from __future__ import annotations

import subprocess
from pathlib import Path

from packager.errors import EnvironmentFailure

SHOWN_LINES = 25


def run_tool(command: list[str], what: str, cwd: Path | None = None) -> None:
    """Run `command`; raise EnvironmentFailure with the tail of its output when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-SHOWN_LINES:])
        raise EnvironmentFailure(f"{what} failed (exit {result.returncode}):\n{output}")
