"""The fast tier's rules hold (see conftest.py): what is not a fake fails the test that asks for it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from packager.cache import cache_root
from packager.settings import DEFAULT_RUNTIME
from packager.triton import launcher_for
from packager.triton.container import container_ready
from packager.triton.local import LocalLauncher

REFUSED = "the fast tier runs on fakes only, and this test"


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("attempt", "why"),
    [
        (lambda: subprocess.run([sys.executable, "-m", "packager", "--help"]), "starts"),
        (lambda: subprocess.run("bwrap --version", shell=True), "starts"),
        (lambda: os.system("true"), "runs 'true'"),
        (lambda: launcher_for(DEFAULT_RUNTIME), "asks for a real launcher"),
        (lambda: LocalLauncher.start(None, Path("repo"), Path("log")), "starts a real Triton"),  # type: ignore[arg-type]
        (lambda: container_ready(DEFAULT_RUNTIME), "connects to a container engine"),
        (lambda: socket.create_connection(("127.0.0.1", _unused_port()), timeout=1), "which no socket"),
        (lambda: socket.create_connection(("192.0.2.1", 80), timeout=1), "connects to 192.0.2.1:80"),
    ],
)
def test_what_is_not_a_fake_fails_the_test(attempt: Callable[[], object], why: str) -> None:
    with pytest.raises(pytest.fail.Exception, match=f"{REFUSED} .*{why}"):
        attempt()


def test_git_and_a_listener_of_this_process_are_allowed_and_the_cache_is_the_tiers(
    fast_cache: Path,
) -> None:
    assert subprocess.run(["git", "--version"], capture_output=True, check=True).stdout.startswith(b"git ")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        socket.create_connection(listener.getsockname(), timeout=1).close()
    assert cache_root() == fast_cache
