"""Benchmark of the CLI's start, a ratio against a baseline measured in the same run.

    ./pants package tools/packager && ./pants run benchmarks/cli_start.py

Times `packager --version`, `packager --help` and `packager validate --help` from the built PEX (median
of 5 runs, after one that materializes its virtualenv), against the PEX's own interpreter doing nothing
(`PEX_INTERPRETER=1 packager.pex -c pass`: the floor any PEX pays) and a bare `python -c pass`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from packager.modeldir import find_repo_root

ROOT = find_repo_root(Path(__file__).parent) or Path.cwd()
PEX = ROOT / "dist" / "tools.packager" / "packager.pex"
RUNS = 5


def median_seconds(command: list[str], environment: dict[str, str] | None = None) -> float:
    """The median wall time of RUNS runs of `command` (which must succeed), after one unmeasured run."""
    env = {**os.environ, **(environment or {})}
    times = []
    for run in range(RUNS + 1):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        if run:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    if not PEX.is_file():
        raise SystemExit(f"{PEX} is missing: run `./pants package tools/packager` first")
    python = median_seconds([sys.executable, "-c", "pass"])
    floor = median_seconds([str(PEX), "-c", "pass"], {"PEX_INTERPRETER": "1"})
    print(f"packager PEX start on {os.cpu_count()} CPUs, median of {RUNS} runs")
    print(f"{'command':<32} {'seconds':>8} {'vs PEX doing nothing':>22} {'vs python -c pass':>18}")
    print(f"{'python -c pass':<32} {python:>8.3f}")
    print(f"{'PEX_INTERPRETER=1 pex -c pass':<32} {floor:>8.3f} {1.0:>21.2f}x {floor / python:>17.1f}x")
    for arguments in (["--version"], ["--help"], ["validate", "--help"]):
        seconds = median_seconds([str(PEX), *arguments])
        name = "packager " + " ".join(arguments)
        print(f"{name:<32} {seconds:>8.3f} {seconds / floor:>21.2f}x {seconds / python:>17.1f}x")


if __name__ == "__main__":
    main()
