"""Stopping a server's whole process group, on every path out. What the server wrote under /tmp or
/dev/shm lives in its sandbox (see `sandbox`) and goes with it."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

STOP_GRACE = 10.0  # the longest wait for the group to be gone after SIGKILL
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before exec: have Linux kill it if the packager dies, even by SIGKILL (no cleanup code
    runs then; a server's python stubs notice their parent is gone and exit too)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the group and wait until none of it runs. Nothing needs a graceful stop: the results are
    in, bubblewrap would not pass a SIGTERM on to Triton (its sandbox dies with it either way), and what
    the server wrote under /tmp or /dev/shm lives in the sandbox, which goes with its last process."""
    group = process.pid
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
    """The live processes of a process group. A zombie is not one: it has released its memory, files and
    namespaces (the sandbox's /tmp and /dev/shm with them), and the kernel reaps it (the sandbox's init
    lingers as one for about a second)."""
    members = []
    for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        try:
            if os.getpgid(pid) == group and not _zombie(pid):
                members.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True  # gone already
