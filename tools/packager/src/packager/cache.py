"""The packager's cache directory: content-addressed entries, built once and published atomically."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_root() -> Path:
    """PACKAGER_CACHE, else $XDG_CACHE_HOME/packager, else ~/.cache/packager."""
    if os.environ.get("PACKAGER_CACHE"):
        return Path(os.environ["PACKAGER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "packager"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock named after `path` (other processes building it wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """A scratch directory that becomes `final` only if the block succeeds (never a half-built entry).

    Call it holding `locked(final)`: scratch directories of `final` left by a killed builder are removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield scratch
        os.replace(scratch, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
