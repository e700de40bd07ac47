"""Benchmarks of execution environments, each a ratio against a baseline measured in the same run:
locking (uv, cold and warm cache), installing a lock into a fresh venv (pip vs uv, both with warm download
caches), and the conda builder (a cold build vs a cache hit; the local channel made once first).

    ./pants run benchmarks/environments.py            # the digits model (numpy, onnxruntime, pillow)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmarks.timing import timed
from packager.config import load_config
from packager.environments import ensure_environment, find_interpreter, lock_model, uv_command
from packager.environments.channel import local_channel
from packager.environments.conda import CondaBuilder
from packager.modeldir import LOCK_FILE, ModelDir, find_repo_root

ROOT = find_repo_root(Path(__file__).parent) or Path.cwd()
RUNTIME = load_config(ROOT).runtime("local")
MODEL = ModelDir(ROOT / "models" / "digits")


def row(name: str, baseline: tuple[str, float], measured: tuple[str, float]) -> None:
    ratio = baseline[1] / measured[1] if measured[1] else float("inf")
    print(
        f"{name:<34} {baseline[0]:>24} {baseline[1]:>8.3f} s {measured[0]:>24} {measured[1]:>8.3f} s {ratio:>8.1f}x"
    )


def bench_lock(scratch: Path) -> None:
    copy = ModelDir(scratch / "lock" / MODEL.name)
    copy.path.mkdir(parents=True)
    shutil.copy(MODEL.path / "requirements.txt", copy.path / "requirements.txt")
    os.environ["UV_CACHE_DIR"] = str(scratch / "uv-cold")
    cold = timed(lambda: lock_model(copy, RUNTIME))
    warm = statistics.median(timed(lambda: lock_model(copy, RUNTIME, write=False)) for _ in range(3))
    del os.environ["UV_CACHE_DIR"]
    row("lock (uv pip compile)", ("empty uv cache", cold), ("warm (median of 3)", warm))


def _venv(path: Path) -> Path:
    python = find_interpreter(RUNTIME.python).path
    subprocess.run([str(python), "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def _pip(scratch: Path, name: str) -> None:
    python = find_interpreter(RUNTIME.python).path
    target = _venv(scratch / name)
    command = [str(python), "-m", "pip", "--python", str(target), "install", "--require-hashes", "--no-deps"]
    subprocess.run(
        [*command, "--quiet", "--disable-pip-version-check", "-r", str(MODEL.path / LOCK_FILE)],
        check=True,
        stderr=subprocess.DEVNULL,  # this machine's pip.conf names index folders that are not all there
    )


def _uv(scratch: Path, name: str) -> None:
    target = _venv(scratch / name)
    command = [*uv_command(), "pip", "install", "--python", str(target), "--require-hashes", "--no-deps"]
    subprocess.run(
        [*command, "--no-build", "--link-mode", "copy", "--quiet", "-r", str(MODEL.path / LOCK_FILE)],
        check=True,
    )


def bench_install(scratch: Path) -> None:
    _pip(scratch, "pip-warmup")  # both download caches warm: the comparison is the installer's own work
    _uv(scratch, "uv-warmup")
    pip = statistics.median(timed(_pip, scratch, f"pip-{index}") for index in range(3))
    uv = statistics.median(timed(_uv, scratch, f"uv-{index}") for index in range(3))
    row("venv + install the lock", ("pip (median of 3)", pip), ("uv (median of 3)", uv))


def bench_conda(scratch: Path) -> None:
    os.environ["PACKAGER_CACHE"] = str(scratch / "cache")
    channel = timed(lambda: local_channel(find_interpreter(RUNTIME.python)))
    builder = CondaBuilder(("local",))
    cold = timed(lambda: ensure_environment(MODEL, RUNTIME, builder))
    hit = statistics.median(timed(lambda: ensure_environment(MODEL, RUNTIME, builder)) for _ in range(5))
    del os.environ["PACKAGER_CACHE"]
    print(f"{'(local conda channel made once)':<34} {'':>24} {'':>10} {'':>24} {channel:>8.3f} s")
    row("conda env (digits)", ("cold build", cold), ("cache hit (median of 5)", hit))


def main() -> None:
    print(
        f"runtime {RUNTIME.name}: CPython {RUNTIME.python}, {RUNTIME.platform}; model {MODEL.name}; {os.cpu_count()} CPUs"
    )
    print(f"{'benchmark':<34} {'baseline':>24} {'':>10} {'measured':>24} {'':>10} {'ratio':>9}")
    with tempfile.TemporaryDirectory(prefix="packager-bench-envs-") as scratch:
        for bench in (bench_lock, bench_install, bench_conda):
            bench(Path(scratch))


if __name__ == "__main__":
    main()
