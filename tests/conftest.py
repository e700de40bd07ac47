"""Shared fixtures: a way to run the packager CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

RunPackager = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_packager() -> RunPackager:
    """Run `python -m packager ARGS` in `cwd` and return the finished process (text output)."""

    def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        python_path = os.pathsep.join(os.path.abspath(entry) for entry in sys.path)
        environment = {**os.environ, "PYTHONPATH": python_path, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "packager", *args],
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run
