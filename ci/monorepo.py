"""A throwaway copy of this monorepo, as a user's checkout holds it (weights and build outputs aside),
committed to a new git repository: where the tests and the benchmark of `packager ci` run real Pants.

Its files are what //:monorepo (with its dependencies) names, so that a test's sandbox holds them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

SHARED = [
    "pants", "pants.toml", "pyproject.toml", "BUILD", ".gitignore", ".dvcignore", ".dvc/config", "dvc-store",
    "packager.toml", "3rdparty/python", "tools/packager", "libs",
]  # fmt: skip
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "python_env.tar.gz", "*.onnx")


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` as a fixed author; its output."""
    command = ["git", "-c", "user.name=CI", "-c", "user.email=ci@example.com", *args]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def copy_monorepo(source: Path, target: Path, models: Mapping[str, str]) -> Path:
    """`source`'s shared files in `target`, with models/<name> a copy of source's models/<origin> for each
    name: origin of `models`, committed on main."""
    for name in SHARED:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, ignore=SKIPPED)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)
    for name, origin in models.items():
        shutil.copytree(source / "models" / origin, target / "models" / name, ignore=SKIPPED)
    (target / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    (target / "pants").chmod(0o755)
    git(target, "init", "-q", "-b", "main")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", f"the monorepo with {len(models)} models")
    return target
