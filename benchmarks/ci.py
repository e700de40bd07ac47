"""Benchmark of `packager ci`: what a push costs as the monorepo grows, each a ratio in one run.

    ./pants package ci:dvc && ./pants run benchmarks/ci.py [--models 30]

Builds two throwaway monorepos from this one (its Pants setup, packager, libs/ and DVC remote), one with
1 model and one with N (generated copies of models/churn), and times `packager ci` in each as a fresh CI
job runs it (no Pants daemon left from an earlier job; the file stores of the embedded defaults):

1. one changed model in the N-model repository vs in the 1-model repository (goal: <= 1.2x);
2. a push that changes no model vs `--all` (every model processed), both in the N-model repository
   (goal: <= 10%).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ci.monorepo import copy_monorepo, git
from packager.modeldir import find_repo_root

ROOT = find_repo_root(Path(__file__).parent) or Path.cwd()
DVC_PEX = ROOT / "dist" / "ci" / "dvc.pex"
# What a process `pants run` started inherits; the benchmark's repositories are other buildroots.
PANTS_RUN_MARKERS = ("__PANTS_BIN_NAME", "PANTSD_RUNTRACKER_CLIENT_START_TIME")


def monorepo(parent: Path, models: int) -> Path:
    """A committed monorepo holding `models` copies of models/churn (churn_01, churn_02, ...)."""
    copies = {f"churn_{index:02d}": "churn" for index in range(1, models + 1)}
    return copy_monorepo(ROOT, parent / f"repo-{models}", copies)


def branch_with(repo: Path, branch: str, path: str, text: str) -> None:
    git(repo, "checkout", "-q", "main")
    git(repo, "checkout", "-q", "-b", branch)
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    with (repo / path).open("a") as stream:
        stream.write(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"change {path}")


def stop_pantsd(repo: Path) -> None:
    """End the repository's Pants daemon, as a CI job's end does."""
    for pid_file in repo.glob(".pids/*/pantsd/pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass
    time.sleep(1)


def ci(repo: Path, *args: str) -> float:
    """Seconds `packager ci ARGS` takes in `repo`, started as a fresh job; it must succeed."""
    stop_pantsd(repo)
    environment = {name: value for name, value in os.environ.items() if name not in PANTS_RUN_MARKERS}
    environment.update(
        PYTHONPATH=os.pathsep.join(os.path.abspath(entry) for entry in sys.path),
        PACKAGER_DVC=str(DVC_PEX),
        DVC_NO_ANALYTICS="1",
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "packager", "ci", *args],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    stop_pantsd(repo)
    if result.returncode != 0:
        raise SystemExit(f"packager ci {' '.join(args)} in {repo} failed:\n{result.stdout}\n{result.stderr}")
    print(f"  packager ci {' '.join(args) or '(affected)'} in {repo.name}: {seconds:.1f} s", flush=True)
    return seconds


def row(name: str, baseline: tuple[str, float], measured: tuple[str, float], goal: str) -> None:
    ratio = measured[1] / baseline[1]
    print(
        f"{name:<34} {baseline[0]:>18} {baseline[1]:>7.1f} s {measured[0]:>18} {measured[1]:>7.1f} s"
        f" {ratio:>6.2f}x  goal {goal}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=30, help="models in the large repository (default 30)")
    options = parser.parse_args()
    if not DVC_PEX.is_file():
        raise SystemExit(f"{DVC_PEX} is missing: run `./pants package ci:dvc` first")
    with tempfile.TemporaryDirectory(prefix="bench-ci-") as scratch:
        small, large = monorepo(Path(scratch), 1), monorepo(Path(scratch), options.models)
        step = "models/churn_01/churn/1/model.py"
        # The first job in a repository pays one-time costs (Pants' caches for a new buildroot): a warm-up
        # push of another change in each, not measured, so that the measured jobs start alike.
        for repo in (small, large):
            branch_with(repo, "warm-up", step, "\n\n# Warm-up.\n")
            ci(repo)
        for repo in (small, large):
            branch_with(repo, "feature/one", step, "\n\n# Scored in one batch.\n")
        one_small = ci(small)
        one_large = ci(large)
        branch_with(large, "docs/notes", "NOTES.md", "How we train.\n")
        nothing = ci(large)
        every = ci(large, "--all")
        print(
            f"\n`packager ci` on 2 CPUs, one run each, a fresh Pants daemon per run ({options.models} models):"
        )
        print(f"{'':<34} {'baseline':>18} {'':>9} {'measured':>18} {'':>9} {'ratio':>7}")
        row(
            "one changed model",
            ("1-model repo", one_small),
            (f"{options.models}-model repo", one_large),
            "<= 1.20x",
        )
        row("a push that changes no model", ("--all", every), ("nothing affected", nothing), "<= 0.10x")


if __name__ == "__main__":
    main()
