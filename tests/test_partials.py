"""Interrupted writes: a writer killed with SIGKILL leaves its `.partial` behind (no code runs), and the
next writer in that directory removes it, while a live writer's partial is never touched. What lands is
world-readable. Scratch directories are the same: a killed `mme serve` leaves its own in the temporary
directory, and the next command that makes one removes them, never one a live process holds."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from packager.archives import Member, write_tar_gz
from packager.cache import locked
from packager.partials import STALE_AFTER_SECONDS
from packager.release.stores import open_store
from packager.scratch import scratch_dir, sweep_scratch
from tests.conftest import child_environment, serve_banner

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


HOLDER = """
import time
from packager.scratch import scratch_dir

with scratch_dir("held"):
    print("holding", flush=True)
    time.sleep(120)
"""


def _run_until(script: str, line: str, *args: str, temp: Path | None = None) -> subprocess.Popen[str]:
    """A child Python running `script` (with TMPDIR=`temp`), once it has printed `line`."""
    environment = child_environment({"TMPDIR": str(temp)} if temp else None)
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


def _serve(repository: Path, temp: Path) -> subprocess.Popen[str]:
    """`packager mme serve` on an empty file store, its scratch directories in `temp`, once it serves."""
    server = subprocess.Popen(
        [sys.executable, "-m", "packager", "mme", "serve", "--store", "file:store", "--runtime", "local"],
        cwd=repository,
        env=child_environment({"TMPDIR": str(temp)}),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert serve_banner(server)[-1].startswith("Ctrl-C"), "it serves"
    return server


def test_a_killed_mme_serve_leaves_scratch_that_the_next_one_removes_but_never_a_live_ones(
    tmp_path: Path,
) -> None:
    temp, repository = tmp_path / "tmp", tmp_path / "repo"
    temp.mkdir()
    (repository / "store").mkdir(parents=True)
    (repository / "pants.toml").write_text("")
    holder = _run_until(HOLDER, "holding", temp=temp)
    (held,) = (path.name for path in temp.glob("packager-held-*") if path.is_dir())
    killed = _serve(repository, temp)
    killed.kill()
    killed.wait()
    left = sorted(path.name for path in temp.glob("packager-mme-*") if path.is_dir())
    assert [name.split("-")[2] for name in left] == ["downloads", "repo"], "SIGKILL: no code ran"
    for owner in temp.glob("*.owner"):
        _age(owner)  # the live holder's too: what keeps it is its lock, not its age
    again = _serve(repository, temp)
    try:
        now = {path.name for path in temp.iterdir()}
        assert not now & {*left, *(f"{name}.owner" for name in left)}, "the killed server's scratch is gone"
        assert {name for name in now if "-held-" in name} == {held, f"{held}.owner"}
    finally:
        again.send_signal(signal.SIGINT)
        again.wait(timeout=60)
        holder.kill()
        holder.wait()
    assert sorted(path.name for path in temp.iterdir()) == sorted([held, f"{held}.owner"])


def test_a_fixed_prefix_under_a_cache_lock_is_swept_only_once_its_lock_is_free(tmp_path: Path) -> None:
    """A conda environment's prefix has a fixed name (it is written into the environment) and a
    `cache.locked` lock beside it, which its builder holds and every builder opens by name."""
    prefix = tmp_path / "packager-conda-0123456789abcdef"
    with locked(prefix):
        (prefix / "bin").mkdir(parents=True)
        _age(tmp_path / f"{prefix.name}.lock")
        with scratch_dir("other", tmp_path):
            assert prefix.is_dir(), "a live builder's prefix is left alone"
    assert sweep_scratch(tmp_path) == [prefix] and not prefix.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{prefix.name}.lock"], "the lock stays"
