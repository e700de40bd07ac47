"""What a stopped server must not leave behind: its process group, the environments Triton unpacked
under /tmp/python_env_*, and its /dev/shm regions."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

STOP_GRACE = 10.0
SHM = Path("/dev/shm")


class EnvWatcher:
    """Notes, while a server runs, which /tmp/python_env_* directories its processes work in.

    Triton unpacks a packed environment into /tmp/python_env_<random> (/tmp is fixed) and removes it on
    a graceful shutdown, but not when it has to be killed. Only directories seen in use by this server's
    own process group are ever removed: another server's, unpacking at the same moment, is left alone.
    """

    INTERVAL = 0.2

    def __init__(self, group: int) -> None:
        self.group = group
        self.seen: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self.seen |= envs_in_use(group_members(self.group))

    def stop(self) -> set[Path]:
        self._stop.set()
        self._thread.join()
        self.seen |= envs_in_use(group_members(self.group))
        return self.seen


def shm_prefix(http_port: int) -> str:
    """The name prefix of the /dev/shm regions of the server this process runs on `http_port`."""
    return f"packager_{os.getpid()}_{http_port}_"


def stop_process_group(process: subprocess.Popen[bytes], watcher: EnvWatcher, regions: str) -> None:
    """Stop the server's whole process group, then remove the environments it unpacked and its shm regions."""
    group = process.pid
    envs = watcher.stop()
    _signal_group(group, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(group, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + STOP_GRACE
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    for directory in envs - envs_in_use(_all_pids()):
        shutil.rmtree(directory, ignore_errors=True)
    for region in SHM.glob(f"{regions}*"):
        region.unlink(missing_ok=True)


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def group_members(group: int) -> list[int]:
    members = []
    for pid in _all_pids():
        try:
            if os.getpgid(pid) == group:
                members.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def envs_in_use(pids: list[int]) -> set[Path]:
    """The /tmp/python_env_* directories these processes run in or hold files of."""
    found: set[Path] = set()
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            links = [os.readlink(fd) for fd in glob.glob(f"/proc/{pid}/fd/*")]
        except (OSError, PermissionError):
            continue
        paths = [
            entry.split(b"=", 1)[1].decode(errors="replace")
            for entry in environ
            if entry.startswith(b"VIRTUAL_ENV=")
        ]
        for path in [*paths, *links]:
            if path.startswith("/tmp/python_env_"):
                found.add(Path("/".join(path.split("/")[:3])))
    return found
