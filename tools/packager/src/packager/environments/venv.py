"""The venv builder: a virtualenv on the stub's CPython, filled by pip, made relocatable."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from packager.environments.interpreters import Interpreter, find_interpreter
from packager.environments.lock import install_from_lock
from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.subprocesses import run_tool

RELOCATABLE_ACTIVATE = """\
# Written by the packager: this environment may be unpacked anywhere (Triton unpacks it under /tmp).
deactivate () { :; }
VIRTUAL_ENV="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export VIRTUAL_ENV
PATH="$VIRTUAL_ENV/bin:$PATH"
export PATH
unset PYTHONHOME
"""


class VenvBuilder:
    """A virtualenv on the stub's CPython, filled from the lock by uv; its bin/python links to that
    interpreter, so it runs only where that interpreter is (the local launcher lends it)."""

    name = "venv"
    portable = False

    def __init__(self) -> None:
        self._interpreters: dict[str, Interpreter] = {}

    @classmethod
    def for_runtime(cls, runtime: Runtime, report: Report = silent) -> VenvBuilder:
        """The same builder for every runtime (it builds without saying anything)."""
        return cls()

    def _interpreter(self, python: str) -> Interpreter:
        if python not in self._interpreters:
            self._interpreters[python] = find_interpreter(python)  # refuses any other minor
        return self._interpreters[python]

    def fingerprint(self, python: str) -> dict[str, str]:
        interpreter = self._interpreter(python)
        return {
            "interpreter": str(interpreter.path),
            "version": interpreter.version,
            "platform": interpreter.platform,
        }

    def build(self, lock: Path, python: str, destination: Path) -> None:
        interpreter = self._interpreter(python)
        run_tool(
            [str(interpreter.path), "-m", "venv", "--without-pip", str(destination)],
            "creating the virtualenv",
        )
        install_from_lock(lock, destination / "bin" / "python")
        make_relocatable(destination)


def make_relocatable(venv: Path) -> None:
    """Drop every mention of the build directory, so the tree works (and packs the same) anywhere."""
    for leftover in ("activate.csh", "activate.fish", "Activate.ps1"):
        (venv / "bin" / leftover).unlink(missing_ok=True)
    (venv / "bin" / "activate").write_text(RELOCATABLE_ACTIVATE)
    config = venv / "pyvenv.cfg"
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(line for line in lines if not line.startswith("command =")))
    rewritten = set()
    for script in (venv / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            portable = _portable_script(script.read_bytes(), f"{venv}/bin/".encode())
            if portable is not None:
                script.write_bytes(portable)
                rewritten.add(script.resolve())
    for record in venv.glob("lib/python*/site-packages/*.dist-info/RECORD"):
        _update_record(record, rewritten)


def _portable_script(content: bytes, bin_dir: bytes) -> bytes | None:
    """A console script with `#!/usr/bin/env <python>` instead of the build path, or None if it has none.

    pip and uv write `#!<venv>/bin/python3.11`, or, where that path is too long for a shebang, a
    three-line /bin/sh preamble that execs it (uv quotes the path).
    """
    if content.startswith(b"#!" + bin_dir):
        first, _, rest = content.partition(b"\n")
        return b"#!/usr/bin/env " + first.rsplit(b"/", 1)[-1] + b"\n" + rest
    lines = content.split(b"\n", 3)
    preamble = len(lines) == 4 and lines[0] == b"#!/bin/sh" and lines[2] == b"' " + b"'" * 3
    exec_line = b"'" * 3 + b"exec' "
    if preamble and lines[1].startswith((exec_line + bin_dir, exec_line + b"'" + bin_dir)):  # pip; uv quotes
        interpreter = lines[1].split()[1].strip(b"'").rsplit(b"/", 1)[-1]
        return b"#!/usr/bin/env " + interpreter + b"\n" + lines[3]
    return None


def _update_record(record: Path, rewritten: set[Path]) -> None:
    """Give rewritten scripts their new hash and size in a wheel's RECORD (it names them relatively)."""
    site_packages = record.parent.parent
    lines = []
    for line in record.read_text().splitlines():
        path, _, _ = line.partition(",")
        target = (site_packages / path).resolve()
        if target in rewritten:
            data = target.read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            line = f"{path},sha256={digest},{len(data)}"
        lines.append(line)
    record.write_text("\n".join(lines) + "\n")
