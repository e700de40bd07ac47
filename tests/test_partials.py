"""Interrupted writes: a writer killed with SIGKILL leaves its `.partial` behind (no code runs), and the
next writer in that directory removes it, while a live writer's partial is never touched. What lands is
world-readable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from packager.archives import Member, write_tar_gz
from packager.partials import STALE_AFTER_SECONDS
from packager.release.stores import open_store
from tests.conftest import child_environment

KILLED_BUILD = """
import sys, time
from pathlib import Path
from packager.archives import Member, write_tar_gz

def members():
    yield Member("weights.bin", "file", data=b"w" * 3_000_000)
    print("writing", flush=True)
    time.sleep(120)
    yield Member("late", "file", data=b"never")

write_tar_gz(Path(sys.argv[1]), members())
"""

KILLED_PUSH = """
import shutil, sys, time
from pathlib import Path
from packager.release.stores import open_store

real = shutil.copyfile

def slow(source, destination, **options):
    real(source, destination)
    print("copied", flush=True)
    time.sleep(120)

shutil.copyfile = slow
open_store(sys.argv[1], None).put_new("m/m_1.tar.gz", Path(sys.argv[2]), {"sha256": "s"})
"""


def _run_until(script: str, line: str, *args: str) -> subprocess.Popen[str]:
    environment = child_environment()
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args], env=environment, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == line
    return process


def _age(path: Path) -> None:
    """Make a partial look as old as a dead writer's (past the grace for a writer about to lock it)."""
    past = time.time() - STALE_AFTER_SECONDS - 1
    os.utime(path, (past, past))


def test_a_killed_build_leaves_a_partial_that_the_next_build_removes(tmp_path: Path) -> None:
    out = tmp_path / "dist" / "m_1.tar.gz"
    writer = _run_until(KILLED_BUILD, "writing", str(out))
    try:
        (partial,) = (tmp_path / "dist").glob(".*.partial")
        _age(partial)
        write_tar_gz(tmp_path / "dist" / "other.tar.gz", [Member("x", "file", data=b"x")])
        assert partial.exists(), "a live writer's partial is left alone"
    finally:
        writer.kill()
        writer.wait()
    assert partial.exists() and not out.exists(), "SIGKILL: no code ran, the partial is there"
    _age(partial)
    write_tar_gz(out, [Member("weights.bin", "file", data=b"w")])
    assert sorted(path.name for path in (tmp_path / "dist").iterdir()) == ["m_1.tar.gz", "other.tar.gz"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_a_killed_file_store_push_leaves_a_partial_that_the_next_push_removes(tmp_path: Path) -> None:
    source = tmp_path / "m_1.tar.gz"
    source.write_bytes(b"artifact")
    uri = f"file://{tmp_path / 'store'}"
    pusher = _run_until(KILLED_PUSH, "copied", uri, str(source))
    pusher.kill()
    pusher.wait()
    directory = tmp_path / "store" / "m"
    (partial,) = directory.glob(".*.partial")
    _age(partial)
    store = open_store(uri, None)
    store.put_new("m/m_1.tar.gz", source, {"sha256": "s"})
    assert sorted(path.name for path in directory.iterdir()) == ["m_1.tar.gz", "m_1.tar.gz.meta.json"]
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
