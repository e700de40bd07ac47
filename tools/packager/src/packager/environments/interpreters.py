"""Finding the CPython of a given minor version (the Python of a Triton python-backend stub)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from packager.errors import EnvironmentFailure

_PROBE = (
    "import json, platform, sys, sysconfig; print(json.dumps({'implementation': platform.python_implementation(), "
    "'version': platform.python_version(), 'prefix': sys.base_prefix, "
    "'libdir': sysconfig.get_config_var('LIBDIR') or '', "
    "'soname': sysconfig.get_config_var('INSTSONAME') or '', 'machine': platform.machine(), "
    "'libc': '-'.join(platform.libc_ver())}))"
)


@dataclass(frozen=True)
class Interpreter:
    """A CPython installation: where it is, its full version, and where its shared libpython lives."""

    path: Path
    version: str
    prefix: Path  # its installation (sys.base_prefix): the standard library and the shared libpython
    libdir: Path
    soname: str
    machine: str
    libc: str

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def has_shared_libpython(self) -> bool:
        """The stub links libpython3.X.so.1.0, so the interpreter must ship it."""
        return bool(self.soname) and (self.libdir / self.soname).is_file()

    @property
    def platform(self) -> str:
        """What an environment built with it depends on besides its packages."""
        return f"{self.machine}-{self.libc or 'unknown-libc'}"


def probe(path: Path) -> Interpreter | None:
    """Describe the interpreter at `path`, or None when it is not a working CPython."""
    try:
        result = subprocess.run([str(path), "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    if result.returncode != 0:
        return None
    facts = json.loads(result.stdout)
    if facts["implementation"] != "CPython":
        return None
    return Interpreter(
        path,
        facts["version"],
        Path(facts["prefix"]),
        Path(facts["libdir"]),
        facts["soname"],
        facts["machine"],
        facts["libc"],
    )


def find_interpreter(minor: str) -> Interpreter:
    """A CPython `minor` (such as "3.11") with a shared libpython: PACKAGER_PYTHON_<3_11>, pyenv, then PATH."""
    variable = f"PACKAGER_PYTHON_{minor.replace('.', '_')}"
    override = os.environ.get(variable)
    if override:
        chosen = probe(Path(override))
        if chosen is None or chosen.minor != minor or not chosen.has_shared_libpython:
            if chosen is None:
                what = "not a working CPython"
            elif chosen.minor != minor:
                what = f"CPython {chosen.minor}"
            else:
                what = "a CPython without a shared libpython"
            raise EnvironmentFailure(
                f"{variable}={override} is {what}; the target's python-backend stub runs CPython {minor} "
                "with its shared libpython, and an environment built on another minor fails to load in Triton"
            )
        return chosen
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(f"{pyenv}/versions/{minor}.*/bin/python{minor}"), reverse=True)
    candidates += [shutil.which(f"python{minor}") or ""]
    for candidate in filter(None, candidates):
        interpreter = probe(Path(candidate))
        if interpreter is not None and interpreter.minor == minor and interpreter.has_shared_libpython:
            return interpreter
    raise EnvironmentFailure(
        f"no CPython {minor} with a shared libpython found (looked in {pyenv}/versions and PATH; "
        f"{variable} names one); the Triton python backend stub needs one: "
        f"install it (`pyenv install {minor}` or `apt-get install python{minor} libpython{minor}`)"
    )
