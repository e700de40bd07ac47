"""`./pants package tools/packager:packager` gives a PEX that runs outside the repository, with the
tools it drives (uv) inside it.

Pants builds the PEX into this test's sandbox (runtime_package_dependencies in tests/BUILD).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from packager import __version__

PEX = Path("tools.packager/packager.pex")
GOOD = Path(__file__).parent / "corpus" / "good" / "pipeline"
BAD = Path(__file__).parent / "corpus" / "bad" / "ensemble_type_mismatch"


def test_pex_validates_models_outside_the_repo(tmp_path: Path) -> None:
    assert PEX.is_file(), "run this test through `./pants test`, which builds the PEX"
    pex = shutil.copy2(PEX, tmp_path / "packager.pex")
    shutil.copytree(GOOD, tmp_path / "work" / "digits")
    shutil.copytree(BAD, tmp_path / "work" / "broken")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(pex), *args]
        user = {name: value for name, value in os.environ.items() if not name.startswith(("PEX", "__PEX"))}
        return subprocess.run(
            command, cwd=tmp_path / "work", env=user, capture_output=True, text=True, timeout=120
        )

    assert run("--version").stdout == f"packager, version {__version__}\n"
    assert run("validate", "digits").returncode == 0
    broken = run("validate", ".")
    assert broken.returncode == 1
    assert broken.stdout.startswith(
        "broken/digits/config.pbtxt:38:45: ensemble tensor 'probabilities' is TYPE_FP64"
    )
    assert broken.stderr == "2 models checked: 1 ok, 1 with 1 problem\n"
    created = run("new", "demo", "--models-dir", "models")  # locks with the uv the PEX carries
    assert created.returncode == 0, created.stderr
    lock = tmp_path / "work" / "models" / "demo" / "requirements.lock"
    assert lock.read_text().startswith("# packager lock: requirements=")
