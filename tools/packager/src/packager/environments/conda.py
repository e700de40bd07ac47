"""The conda builder: a conda environment (conda, mamba or micromamba) made relocatable by conda-pack."""

from __future__ import annotations

import platform
import shutil
import tempfile
from pathlib import Path

from packager.archives import extract
from packager.environments.requirements import pip_install
from packager.errors import EnvironmentFailure
from packager.subprocesses import run_tool


class CondaBuilder:
    """Python of the stub's minor from conda, the requirements by pip inside it, packed by conda-pack."""

    name = "conda"

    def fingerprint(self, python: str) -> dict[str, str]:
        return {"conda": _conda(), "platform": f"{platform.system()}-{platform.machine()}"}

    def build(self, requirements: Path, constraints: Path, python: str, destination: Path) -> None:
        conda = _conda()
        with tempfile.TemporaryDirectory(prefix="packager-conda-") as scratch:
            prefix, packed = Path(scratch) / "env", Path(scratch) / "env.tar.gz"
            run_tool(
                [conda, "create", "--yes", "--prefix", str(prefix), f"python={python}", "pip"],
                "conda create",
            )
            pip = [
                str(prefix / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--no-compile",
                "--disable-pip-version-check",
            ]
            pip_install([*pip, "-r", str(requirements), "-c", str(constraints)])
            run_tool(
                ["conda-pack", "--prefix", str(prefix), "--output", str(packed), "--quiet"], "conda-pack"
            )
            destination.mkdir()
            extract(packed, destination, absolute_symlinks=True)


def _conda() -> str:
    """The first of micromamba, mamba and conda on PATH, with conda-pack beside it."""
    conda = next((tool for tool in ("micromamba", "mamba", "conda") if shutil.which(tool)), None)
    if conda is None or not shutil.which("conda-pack"):
        raise EnvironmentFailure(
            'env_builder = "conda" needs conda (or mamba/micromamba) and conda-pack on PATH; '
            'install them, or use env_builder = "venv"'
        )
    return conda
