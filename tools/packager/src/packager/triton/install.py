"""Where a local Triton comes from: the runtime's PyPI package (nvidia-pytriton ships the server, its
python backend and the stubs), installed once per runtime and interpreter into the packager's cache."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from packager.cache import building, cache_root, locked
from packager.environments import Interpreter, find_interpreter
from packager.errors import EnvironmentFailure
from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.subprocesses import run_tool

# Bump when the server installation changes shape, so that cached ones are rebuilt.
SERVER_INSTALL_FORMAT = 1


@dataclass(frozen=True)
class ServerInstall:
    """A Triton server binary with its backends, ready to run on this machine."""

    root: Path  # the installation in the cache: everything a server run reads from it is below
    directory: Path  # the wheel's tritonserver/ directory
    bin_dir: Path  # a Python environment whose python3 the stub uses for models without their own env
    interpreter: Interpreter

    @property
    def binary(self) -> Path:
        return self.directory / "bin" / "tritonserver"


def install_server(runtime: Runtime, report: Report = silent) -> ServerInstall:
    """The runtime's server, installed once into the cache from its PyPI package (nvidia-pytriton)."""
    if not runtime.server_package:
        raise EnvironmentFailure(f"runtime {runtime.name!r} names no server_package to run Triton from")
    interpreter = find_interpreter(runtime.python)
    fingerprint = json.dumps(
        [SERVER_INSTALL_FORMAT, runtime.server_package, str(interpreter.path), interpreter.version]
    )
    name = f"{runtime.server_package.replace('==', '-')}-py{interpreter.version}-"
    directory = cache_root() / "servers" / (name + hashlib.sha256(fingerprint.encode()).hexdigest()[:12])
    if not (directory / "installed.json").is_file():
        with locked(directory):
            if not (directory / "installed.json").is_file():
                report(f"installing Triton from {runtime.server_package} into {directory}")
                _install(runtime, interpreter, directory)
    return _server_install(directory, interpreter)


def _server_install(directory: Path, interpreter: Interpreter) -> ServerInstall:
    found = sorted(directory.glob("venv/lib/python*/site-packages/pytriton/tritonserver"))
    if not found:
        raise EnvironmentFailure(f"{directory} holds no tritonserver; delete it and run again")
    return ServerInstall(directory, found[0], directory / "venv" / "bin", interpreter)


def _install(runtime: Runtime, interpreter: Interpreter, directory: Path) -> None:
    with building(directory) as scratch:
        venv = scratch / "venv"
        constraints = scratch / "constraints.txt"
        constraints.write_text("".join(f"{c.requirement}\n" for c in runtime.constraints))
        commands = [
            [str(interpreter.path), "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
             runtime.server_package, "-c", str(constraints)],
        ]  # fmt: skip
        for command in commands:
            run_tool(command, f"installing {runtime.server_package}")
        install = _server_install(scratch, interpreter)
        stub = install.directory / "python_backend_stubs" / interpreter.minor / "triton_python_backend_stub"
        if not stub.is_file():
            raise EnvironmentFailure(
                f"{runtime.server_package} ships no python backend stub for {interpreter.minor}"
            )
        shutil.copy2(stub, install.directory / "backends" / "python" / stub.name)
        facts = {
            "package": runtime.server_package,
            "python": interpreter.version,
            "triton": runtime.triton_version,
        }
        (scratch / "installed.json").write_text(json.dumps(facts, indent=2) + "\n")
