"""Stopping a server's whole process group, on every path out. What the server wrote under /tmp or
/dev/shm lives in its sandbox (see `sandbox`) and goes with it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

STOP_GRACE = 10.0


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group (Triton unloads and exits), SIGKILL whatever is left, and wait until it is gone."""
    group = process.pid
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


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def group_members(group: int) -> list[int]:
    """The live processes of a process group."""
    members = []
    for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        try:
            if os.getpgid(pid) == group:
                members.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members
