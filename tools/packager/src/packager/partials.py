"""Files that appear whole or not at all: written as a locked `.<name>.<random>.partial` beside the final
name, then renamed or linked into place. A writer holds its partial's lock until it is done, so a partial
nobody holds belongs to a writer that died (SIGKILL, power loss); the next writer in that directory
removes it."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

PUBLISHED_MODE = 0o644  # artifacts and store objects are world-readable
# A lock file younger than this may belong to a process between creating and locking it.
STALE_AFTER_SECONDS = 5.0


@contextmanager
def partial_file(final: Path) -> Iterator[Path]:
    """A locked scratch file beside `final`, mode 0644, removed on exit unless it was moved into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final.parent)
    handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.fchmod(handle, PUBLISHED_MODE)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
        os.close(handle)


def remove_stale_partials(directory: Path) -> list[Path]:
    """Remove the partial files in `directory` that no live writer holds; the ones removed."""
    return remove_unheld(directory.glob(".*.partial"), lambda path: path.unlink(missing_ok=True))


def remove_unheld(locks: Iterable[Path], remove: Callable[[Path], None]) -> list[Path]:
    """Call `remove` on each lock file that no live process holds (and that is old enough for its maker to
    have locked it), holding it meanwhile so that no other sweeper does too; the ones removed."""
    removed = []
    for path in locks:
        try:
            handle = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # gone already, or another user's
        try:
            if time.time() - os.fstat(handle).st_mtime < STALE_AFTER_SECONDS:
                continue
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live process holds it
        else:
            remove(path)
            removed.append(path)
        finally:
            os.close(handle)
    return removed
