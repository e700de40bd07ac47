"""`packager loadtest churn` at concurrency 1,2,4,8,16 against the local runtime's Triton, and, where
`packager mme serve` exists, through the SageMaker multi-model-endpoint emulator in front of it (boto3
`invoke_endpoint` -> the emulator -> Triton), printing the emulator's overhead as ratios of throughput and
p50 latency per level (emulator over direct). Not run by CI.

    ./pants run benchmarks/loadtest.py -- [--duration SECONDS]
    PYTHONPATH=tools/packager/src:. python benchmarks/loadtest.py --duration 5

Each run works on a copy of the repository's churn model in a temporary monorepo (weights included).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
LEVELS = "1,2,4,8,16"


def packager(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m packager ARGS` in `cwd`, its output captured."""
    result = subprocess.run(
        [sys.executable, "-m", "packager", *args], cwd=cwd, env=_environment(), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise SystemExit(f"packager {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def _environment() -> dict[str, str]:
    python_path = os.pathsep.join(os.path.abspath(entry) for entry in sys.path)
    return {**os.environ, "PYTHONPATH": python_path, "PACKAGER_CONDA_CHANNELS": "local"}


def loadtest(repo: Path, duration: float, *extra: str) -> dict[str, Any]:
    """One `packager loadtest churn --json` run, its report."""
    arguments = [
        "loadtest",
        "churn",
        "--concurrency",
        LEVELS,
        "--duration",
        f"{duration:g}",
        "--json",
        *extra,
    ]
    result = packager(*arguments, cwd=repo, check=False)
    if not result.stdout.strip().startswith("{"):
        raise SystemExit(f"packager {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def has_emulator(repo: Path) -> bool:
    return packager("mme", "serve", "--help", cwd=repo, check=False).returncode == 0


def _first_line(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def through_emulator(repo: Path, duration: float) -> dict[str, Any]:
    """churn built into a file store, served by `packager mme serve`, load-tested through boto3."""
    store = repo / "dist" / "store"
    packager("build", "churn", "--out", str(store), cwd=repo)
    (artifact,) = sorted(path.name for path in store.glob("churn_*.tar.gz"))
    server = subprocess.Popen(
        [sys.executable, "-m", "packager", "mme", "serve", "--store", f"file://{store}", "--json"],
        cwd=repo,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_first_line, args=(server.stdout, lines), daemon=True).start()
        while True:
            document = json.loads(lines.get(timeout=180))
            if document.get("event") == "serving":
                break
        environment = ["--endpoint", document["endpoint_name"], "--endpoint-url", document["endpoint_url"]]
        return loadtest(repo, duration, *environment, "--target-model", artifact)
    finally:
        server.terminate()
        server.wait(timeout=30)


def show(title: str, report: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(f"{'concurrency':>11} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for level in report["levels"]:
        print(
            f"{level['concurrency']:>11} {level['throughput']:>9.1f} {level['p50_ms'] or 0:>8.2f} "
            f"{level['p95_ms'] or 0:>8.2f} {level['p99_ms'] or 0:>8.2f} {level['errors']:>6}"
        )
    print(report["verdict"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per level")
    duration = parser.parse_args().duration
    with tempfile.TemporaryDirectory(prefix="loadtest-bench-") as directory:
        repo = Path(directory)
        (repo / "pants.toml").write_text("")
        ignored = shutil.ignore_patterns("python_env.tar.gz", "__pycache__")
        shutil.copytree(ROOT / "models" / "churn", repo / "models" / "churn", ignore=ignored)
        shutil.copytree(ROOT / "libs", repo / "libs", ignore=ignored)
        direct = loadtest(repo, duration)
        show("churn, local Triton (KServe v2 HTTP, http.client per worker)", direct)
        if not has_emulator(repo):
            print("\n`packager mme serve` is not here: no emulator comparison")
            return
        emulated = through_emulator(repo, duration)
        show("churn, through the MME emulator (boto3 invoke_endpoint)", emulated)
        print("\nemulator overhead (emulator / direct)")
        print(f"{'concurrency':>11} {'throughput':>10} {'p50':>6}")
        for ours, theirs in zip(direct["levels"], emulated["levels"], strict=True):
            ratio = theirs["throughput"] / ours["throughput"] if ours["throughput"] else float("nan")
            latency = (theirs["p50_ms"] or 0) / ours["p50_ms"] if ours["p50_ms"] else float("nan")
            print(f"{ours['concurrency']:>11} {ratio:>9.2f}x {latency:>5.2f}x")


if __name__ == "__main__":
    main()
