"""Scratch directories that do not outlive their process for long: `packager-<purpose>-<random>` in the
temporary directory, each beside an `.owner` lock file that the process using it holds locked for the
directory's life. A kernel lock goes with its process however it ends (SIGKILL included) and is not
inherited by a reused pid, so a directory whose lock nobody holds (past the few seconds its maker takes
to lock it) belongs to a process that is gone: making a scratch directory first removes those (see
`partials.remove_unheld`), and never one a live process holds."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from packager.partials import remove_unheld

PREFIX = "packager-"
OWNER = ".owner"
LOCK = ".lock"  # what `cache.locked` names its lock: kept, since every holder opens it by name


@contextmanager
def scratch_dir(purpose: str, parent: Path | None = None) -> Iterator[Path]:
    """A new empty directory (mode 0700) in `parent` (default: the temporary directory), removed on exit;
    the ones killed processes left there are removed first."""
    parent = Path(parent or tempfile.gettempdir())
    sweep_scratch(parent)
    handle, owner = tempfile.mkstemp(prefix=f"{PREFIX}{purpose}-", suffix=OWNER, dir=parent)
    directory = _beside(Path(owner), OWNER)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        directory.mkdir(mode=0o700)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        Path(owner).unlink(missing_ok=True)
        os.close(handle)


def sweep_scratch(parent: Path | None = None) -> list[Path]:
    """Remove the scratch directories in `parent` (default: the temporary directory) whose owner is gone,
    and the `packager-*` directories there that a free `cache.locked` lock guards (a conda environment's
    fixed prefix, say); the ones removed."""
    parent = Path(parent or tempfile.gettempdir())
    owned = remove_unheld(sorted(parent.glob(f"{PREFIX}*{OWNER}")), _remove_owned)
    guarded = [lock for lock in sorted(parent.glob(f"{PREFIX}*{LOCK}")) if _beside(lock, LOCK).is_dir()]
    guarded = remove_unheld(guarded, lambda lock: shutil.rmtree(_beside(lock, LOCK), ignore_errors=True))
    return [_beside(owner, OWNER) for owner in owned] + [_beside(lock, LOCK) for lock in guarded]


def _remove_owned(owner: Path) -> None:
    """The directory, then its owner file (which no one else ever opens to hold)."""
    shutil.rmtree(_beside(owner, OWNER), ignore_errors=True)
    owner.unlink(missing_ok=True)


def _beside(lock: Path, suffix: str) -> Path:
    """The directory a lock file beside it guards."""
    return lock.with_name(lock.name.removesuffix(suffix))
