"""The quality gate on one model's targets: Black, mypy and its tests (its cases through a real Triton),
through Pants, as `./pants lint check test models/<name>::`.

A model's tests are its authors' code: Pants runs them with the variables pants.toml lets tests see, and
the gate starts Pants without credentials (`pants_environment`), so nothing it runs can read what
publishing uses.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from packager.ci.affected import pants_environment
from packager.errors import EnvironmentFailure
from packager.modeldir import ModelDir
from packager.subprocesses import SHOWN_LINES

GOALS = ("lint", "check", "test")


@dataclass(frozen=True)
class GateResult:
    """Whether the gate passed for one model, how long it took, and its full log."""

    passed: bool
    seconds: float
    command: list[str]
    log: Path

    def tail(self, lines: int = SHOWN_LINES) -> str:
        """The end of the log, where Pants says what failed."""
        text = self.log.read_text(errors="replace").strip() if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


def run_gate(root: Path, model: ModelDir, pants: list[str], log: Path) -> GateResult:
    """`<pants> lint check test <model>::` in the repository, its output to `log`."""
    spec = f"{model.path.resolve().relative_to(root.resolve()).as_posix()}::"
    command = [*pants, *GOALS, spec]
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w") as output:
        try:
            result = subprocess.run(
                command,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=pants_environment(dict(os.environ)),
            )
        except OSError as error:
            raise EnvironmentFailure(f"cannot run Pants ({shlex.join(command)}): {error}") from error
    return GateResult(result.returncode == 0, time.monotonic() - started, command, log)
