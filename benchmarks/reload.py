"""Benchmark of `packager serve --reload`, a ratio against a baseline measured in the same run.

    ./pants package tools/packager && ./pants run benchmarks/reload.py

In a throwaway monorepo holding a model made by `packager new` (with this repository's packager.toml),
times a save of one python step until `serve --reload` says it reloaded it (median of 3 saves), against
what a data scientist would do without it: stop `packager serve` and start it again, until it prints its
endpoints (median of 3 starts, environment cached).
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from packager.modeldir import find_repo_root

ROOT = find_repo_root(Path(__file__).parent) or Path.cwd()
PEX = ROOT / "dist" / "tools.packager" / "packager.pex"
SAVES = 3


def wait_for(stream: IO[str], marker: str) -> None:
    for line in stream:
        if marker in line:
            return
    raise SystemExit(f"packager serve ended before printing {marker!r}")


def serve(repo: Path, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PEX), "serve", "fraud", *arguments],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)


def main() -> None:
    if not PEX.is_file():
        raise SystemExit(f"{PEX} is missing: run `./pants package tools/packager` first")
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as scratch:
        repo = Path(scratch)
        (repo / "pants.toml").write_text("")
        shutil.copy(ROOT / "packager.toml", repo / "packager.toml")
        subprocess.run([str(PEX), "new", "fraud"], cwd=repo, check=True, capture_output=True)
        step = repo / "models" / "fraud" / "preprocess" / "1" / "model.py"

        starts = []
        for run in range(SAVES + 1):  # the first builds the environment: not measured
            started = time.perf_counter()
            process = serve(repo)
            assert process.stdout is not None
            wait_for(process.stdout, "Ctrl-C stops the server")
            if run:
                starts.append(time.perf_counter() - started)
            stop(process)

        process = serve(repo, "--reload")
        assert process.stdout is not None
        wait_for(process.stdout, "Watching for changes")
        reloads = []
        try:
            for save in range(SAVES):
                started = time.perf_counter()
                step.write_text(step.read_text() + f"\n# save {save}\n")
                wait_for(process.stdout, "reloaded preprocess")
                reloads.append(time.perf_counter() - started)
        finally:
            stop(process)

    restart, reload = statistics.median(starts), statistics.median(reloads)
    print(
        f"`packager serve --reload` on {os.cpu_count()} CPUs, median of {SAVES}; a model from `packager new`"
    )
    print(f"{'':<40} {'seconds':>8} {'ratio':>8}")
    print(f"{'stop and start `packager serve` again':<40} {restart:>8.2f} {1.0:>7.2f}x")
    print(f"{'save until reloaded (--reload)':<40} {reload:>8.2f} {reload / restart:>7.2f}x")


if __name__ == "__main__":
    main()
