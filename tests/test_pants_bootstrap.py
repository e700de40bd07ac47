"""The ./pants bootstrap script: interpreter discovery, the pinned pex check, and the fast path.

A real cold bootstrap downloads Pants from PyPI (CI does one in .ci/run); these tests drive the script's
decisions with a prepared cache so that each failure mode is exercised without the network.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
PLATFORM = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[
    platform.machine().lower()
]
OS = {"Linux": "linux", "Darwin": "macos"}[platform.system()]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy2(REPO / "pants", root / "pants")
    shutil.copy2(REPO / "pants.toml", root / "pants.toml")
    return root


def _run(checkout: Path, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(cache.parent),
        "PANTS_SETUP_CACHE": str(cache),
        "PYENV_ROOT": str(cache.parent / "no-pyenv"),
        **env,
    }
    return subprocess.run(
        ["bash", str(checkout / "pants"), "--version"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _fake_bootstrap(cache: Path, pex_content: bytes) -> Path:
    """A cache that looks bootstrapped: a `pants` that reports how it was called, and a pex file."""
    venv = cache / f"bootstrap-{OS}_{PLATFORM}" / "pants-2.17.1"
    (venv / "bin").mkdir(parents=True)
    pants = venv / "bin" / "pants"
    pants.write_text(
        '#!/usr/bin/env bash\necho "fake pants $* ca=$PANTS_CA_CERTS_PATH cache=$PANTS_SETUP_CACHE"\n'
    )
    pants.chmod(0o755)
    (venv / ".bootstrapped").write_text("2.17.1 v2.1.137 /usr/bin/python3.9\n")
    pex = cache / "pex" / "v2.1.137" / "pex"
    pex.parent.mkdir(parents=True)
    pex.write_bytes(pex_content)
    return pex


def test_pinned_pex_sha_is_verified_and_a_mismatch_stops(checkout: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pex = _fake_bootstrap(cache, b"not the pex that pants.toml pins")
    result = _run(checkout, cache)
    assert result.returncode == 1
    actual = hashlib.sha256(pex.read_bytes()).hexdigest()
    assert f"the pex tool {pex} has sha256 {actual}," in result.stderr
    assert "pins 4d9441e1672e636527ea430e8c59b0884d823dd8ce61ba3f8ecaa443a215087f" in result.stderr
    assert "fake pants" not in result.stdout
    assert pex.read_bytes() == b"not the pex that pants.toml pins", "a mismatch is never silently rebuilt"


def test_bootstrapped_cache_runs_pants_with_the_ca_bundle_and_cache(checkout: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    content = b"a pex whose sha256 this test pins"
    _fake_bootstrap(cache, content)
    toml = checkout / "pants.toml"
    toml.write_text(
        toml.read_text().replace(
            "4d9441e1672e636527ea430e8c59b0884d823dd8ce61ba3f8ecaa443a215087f",
            hashlib.sha256(content).hexdigest(),
        )
    )
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("")
    result = _run(checkout, cache, SSL_CERT_FILE=str(bundle))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"fake pants --version ca={bundle} cache={cache}\n"
    assert result.stderr == ""
    own = _run(checkout, cache, SSL_CERT_FILE=str(bundle), PANTS_CA_CERTS_PATH="/mine.pem")
    assert own.stdout == f"fake pants --version ca=/mine.pem cache={cache}\n", "a user's own setting wins"


def test_missing_pin_for_this_platform_is_a_clear_error(checkout: Path, tmp_path: Path) -> None:
    toml = checkout / "pants.toml"
    toml.write_text(toml.read_text().replace(f'"v2.1.137|{OS}_{PLATFORM}|', '"v2.1.137|elsewhere|'))
    result = _run(checkout, tmp_path / "cache")
    assert result.returncode == 1
    assert f'known_versions has no "v2.1.137|{OS}_{PLATFORM}|<sha256>|<length>" entry' in result.stderr


def test_wrong_bootstrap_python_is_named(checkout: Path, tmp_path: Path) -> None:
    result = _run(checkout, tmp_path / "cache", PANTS_BOOTSTRAP_PYTHON="/bin/false")
    assert result.returncode == 1
    assert "PANTS_BOOTSTRAP_PYTHON=/bin/false is not a working CPython 3.9" in result.stderr


def test_no_python39_anywhere_says_what_to_install(checkout: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (
        "bash",
        "awk",
        "grep",
        "cut",
        "sed",
        "uname",
        "sort",
        "ls",
        "dirname",
        "mkdir",
        "cat",
        "head",
        "env",
    ):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    result = _run(checkout, tmp_path / "cache", PATH=str(bin_dir))
    assert result.returncode == 1
    assert "Pants 2.17.1 runs only on CPython 3.9" in result.stderr
    assert "pyenv install 3.9" in result.stderr
    assert not (tmp_path / "cache" / f"bootstrap-{OS}_{PLATFORM}").exists(), "nothing half-installed is left"
