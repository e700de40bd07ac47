"""Execution environments: a model's requirements.txt packed as the `python_env.tar.gz` its python steps
load through EXECUTION_ENV_PATH, for the Python of the target Triton's stub.

Environments are cached by content (normalized requirements, interpreter, platform, target runtime and
builder), so an unchanged environment is reused at once and models with identical requirements share it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from packager.archives import extract, tree_members, write_tar_gz
from packager.cache import building, cache_root, locked
from packager.config import Runtime
from packager.discovery import ModelDir
from packager.errors import EnvironmentFailure, PackagerError
from packager.interpreters import Interpreter, find_interpreter
from packager.model_config import TritonModel
from packager.subprocesses import run_tool
from packager.validation.configs import ENV_PATH_PARAMETER, MODEL_DIRECTORY_VARIABLE

REQUIREMENTS_FILE = "requirements.txt"
TARBALL = "python_env.tar.gz"
# Bump when the way environments are built or packed changes, so that cached ones are rebuilt.
FORMAT = 3

RELOCATABLE_ACTIVATE = """\
# Written by the packager: this environment may be unpacked anywhere (Triton unpacks it under /tmp).
deactivate () { :; }
VIRTUAL_ENV="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export VIRTUAL_ENV
PATH="$VIRTUAL_ENV/bin:$PATH"
export PATH
unset PYTHONHOME
"""


class RequirementsError(PackagerError):
    """requirements.txt cannot be built for the target runtime."""


@dataclass(frozen=True)
class Environment:
    """A built environment in the cache: the tarball that ships and the same tree unpacked."""

    key: str
    directory: Path
    cache_hit: bool
    seconds: float

    @property
    def tarball(self) -> Path:
        return self.directory / TARBALL

    @property
    def unpacked(self) -> Path:
        return self.directory / "unpacked"

    def metadata(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.directory / "env.json").read_text())
        return loaded


class EnvBuilder(Protocol):
    """Turns a requirements file into an unpacked, relocatable environment whose bin/activate works."""

    name: str

    def build(
        self, requirements: Path, constraints: Path, interpreter: Interpreter, destination: Path
    ) -> None:
        """Create the environment at `destination` (which does not exist yet)."""


class VenvBuilder:
    """A virtualenv on the stub's CPython, filled by pip; its bin/python links to that interpreter."""

    name = "venv"

    def build(
        self, requirements: Path, constraints: Path, interpreter: Interpreter, destination: Path
    ) -> None:
        run_tool(
            [str(interpreter.path), "-m", "venv", "--without-pip", str(destination)],
            "creating the virtualenv",
        )
        pip = [str(interpreter.path), "-m", "pip", "--python", str(destination / "bin" / "python")]
        options = ["--disable-pip-version-check", "--no-compile", "--no-input"]
        run_tool([*pip, "install", *options, "-r", str(requirements), "-c", str(constraints)], "pip install")
        _make_relocatable(destination)


def _make_relocatable(venv: Path) -> None:
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

    pip writes `#!<venv>/bin/python3.11`, or, where that path is too long for a shebang, a three-line
    /bin/sh preamble that execs it.
    """
    if content.startswith(b"#!" + bin_dir):
        first, _, rest = content.partition(b"\n")
        return b"#!/usr/bin/env " + first.rsplit(b"/", 1)[-1] + b"\n" + rest
    lines = content.split(b"\n", 3)
    preamble = len(lines) == 4 and lines[0] == b"#!/bin/sh" and lines[2] == b"' " + b"'" * 3
    if preamble and lines[1].startswith(b"'" * 3 + b"exec' " + bin_dir):
        interpreter = lines[1].split()[1].rsplit(b"/", 1)[-1]
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


class CondaBuilder:
    """A conda environment (conda, mamba or micromamba) made relocatable by conda-pack."""

    name = "conda"

    def build(
        self, requirements: Path, constraints: Path, interpreter: Interpreter, destination: Path
    ) -> None:
        conda = next((tool for tool in ("micromamba", "mamba", "conda") if shutil.which(tool)), None)
        if conda is None or not shutil.which("conda-pack"):
            raise EnvironmentFailure(
                'env_builder = "conda" needs conda (or mamba/micromamba) and conda-pack on PATH; '
                'install them, or use env_builder = "venv"'
            )
        with tempfile.TemporaryDirectory(prefix="packager-conda-") as scratch:
            prefix, packed = Path(scratch) / "env", Path(scratch) / "env.tar.gz"
            run_tool(
                [conda, "create", "--yes", "--prefix", str(prefix), f"python={interpreter.minor}", "pip"],
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
            run_tool([*pip, "-r", str(requirements), "-c", str(constraints)], "pip install")
            run_tool(
                ["conda-pack", "--prefix", str(prefix), "--output", str(packed), "--quiet"], "conda-pack"
            )
            destination.mkdir()
            extract(packed, destination, absolute_symlinks=True)


BUILDERS: dict[str, EnvBuilder] = {"venv": VenvBuilder(), "conda": CondaBuilder()}


def read_requirements(path: Path, runtime: Runtime) -> list[str]:
    """The requirements in a normalized form (one per line, sorted), refusing what breaks `runtime`."""
    if not path.is_file():
        raise RequirementsError(f"{path}: missing; list the packages the model's python steps import")
    normalized = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("-"):
            if line.startswith(("-e", "--editable", "-r", "--requirement", "-c", "--constraint")):
                raise RequirementsError(
                    f"{path}:{number}: {line.split()[0]} is not supported; list every package in this file"
                )
            normalized.append(" ".join(line.split()))
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise RequirementsError(f"{path}:{number}: not a requirement ({error})") from None
        if requirement.url:
            raise RequirementsError(
                f"{path}:{number}: URL requirements cannot be cached by content; use a version"
            )
        _refuse_conflicts(path, number, requirement, runtime)
        normalized.append(_normal_form(requirement))
    return sorted(normalized)


def _normal_form(requirement: Requirement) -> str:
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    specifier = ",".join(sorted(str(spec) for spec in requirement.specifier))
    marker = f"; {requirement.marker}" if requirement.marker else ""
    return f"{canonicalize_name(requirement.name)}{extras}{specifier}{marker}"


def _refuse_conflicts(path: Path, number: int, requirement: Requirement, runtime: Runtime) -> None:
    """Refuse a requirement whose own bounds exclude every version a runtime constraint allows."""
    for constraint in runtime.constraints:
        bound = Requirement(constraint.requirement)
        if canonicalize_name(bound.name) != canonicalize_name(requirement.name):
            continue
        for spec in requirement.specifier:
            if spec.operator in ("==", "===", ">=", ">", "~=") and not bound.specifier.contains(
                spec.version, prereleases=True
            ):
                raise RequirementsError(
                    f"{path}:{number}: {requirement} conflicts with {constraint.requirement} on runtime "
                    f"{runtime.name!r}: {constraint.reason}; pin {constraint.requirement}"
                )


def environment_key(requirements: list[str], interpreter: Interpreter, runtime: Runtime, builder: str) -> str:
    """The content address of an environment: everything that changes what gets built."""
    inputs = {
        "format": FORMAT,
        "requirements": requirements,
        "interpreter": {"path": str(interpreter.path), "version": interpreter.version},
        "platform": interpreter.platform,
        "runtime": {
            "triton": runtime.triton_version,
            "python": runtime.python,
            "constraints": sorted(constraint.requirement for constraint in runtime.constraints),
        },
        "builder": builder,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def ensure_environment(model: ModelDir, runtime: Runtime, progress: bool = True) -> Environment:
    """The model's environment for `runtime`, from the cache or built now."""
    started = time.monotonic()
    requirements = read_requirements(model.path / REQUIREMENTS_FILE, runtime)
    interpreter = find_interpreter(runtime.python)  # refuses any other minor than the stub's
    builder = BUILDERS[runtime.env_builder]
    key = environment_key(requirements, interpreter, runtime, builder.name)
    directory = cache_root() / "envs" / key[:24]
    if (directory / TARBALL).is_file():
        return Environment(key, directory, cache_hit=True, seconds=time.monotonic() - started)
    with locked(directory):
        if not (directory / TARBALL).is_file():
            _say(
                progress,
                f"{model.name}: building the {builder.name} environment {key[:12]} ({len(requirements)} requirements)",
            )
            _build(model, requirements, interpreter, runtime, builder, key, directory)
            hit = False
        else:
            hit = True
    return Environment(key, directory, cache_hit=hit, seconds=time.monotonic() - started)


def _build(
    model: ModelDir,
    requirements: list[str],
    interpreter: Interpreter,
    runtime: Runtime,
    builder: EnvBuilder,
    key: str,
    directory: Path,
) -> None:
    with building(directory) as scratch:
        (scratch / "requirements.txt").write_text("\n".join(requirements) + "\n")
        (scratch / "constraints.txt").write_text("".join(f"{c.requirement}\n" for c in runtime.constraints))
        env = scratch / "build"
        started = time.monotonic()
        builder.build(scratch / "requirements.txt", scratch / "constraints.txt", interpreter, env)
        packages = _installed(env)
        _check_constraints(model, packages, runtime)
        write_tar_gz(scratch / TARBALL, tree_members(env, keep=lambda name: "__pycache__" not in name))
        shutil.rmtree(env)
        extract(scratch / TARBALL, scratch / "unpacked", absolute_symlinks=True)
        (scratch / TARBALL).chmod(0o444)
        metadata = {
            "key": key,
            "model": model.name,
            "runtime": runtime.name,
            "builder": builder.name,
            "python": interpreter.version,
            "interpreter": str(interpreter.path),
            "requirements": requirements,
            "packages": packages,
            "bytes": (scratch / TARBALL).stat().st_size,
            "build_seconds": round(time.monotonic() - started, 2),
        }
        (scratch / "env.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def _installed(env: Path) -> dict[str, str]:
    site_packages = sorted(env.glob("lib/python*/site-packages"))
    distributions = importlib.metadata.distributions(path=[str(path) for path in site_packages])
    return dict(sorted((canonicalize_name(dist.metadata["Name"]), dist.version) for dist in distributions))


def _check_constraints(model: ModelDir, packages: dict[str, str], runtime: Runtime) -> None:
    for constraint in runtime.constraints:
        bound = Requirement(constraint.requirement)
        installed = packages.get(canonicalize_name(bound.name))
        if installed is not None and not bound.specifier.contains(installed, prereleases=True):
            raise RequirementsError(
                f"{model.path / REQUIREMENTS_FILE}: the environment got {bound.name} {installed}, which breaks "
                f"runtime {runtime.name!r} ({constraint.reason}); pin {constraint.requirement}"
            )


def env_path(model: TritonModel) -> Path | None:
    """Where a python step's EXECUTION_ENV_PATH points inside its Triton model directory, if it sets one."""
    parameters = model.config.parameters
    if ENV_PATH_PARAMETER not in parameters:
        return None
    value = str(parameters[ENV_PATH_PARAMETER].string_value)
    return model.directory / value.removeprefix(MODEL_DIRECTORY_VARIABLE)


def place(environment: Environment, destination: Path) -> None:
    """Put the environment's tarball at `destination` (a hard link to the cache where possible)."""
    destination.unlink(missing_ok=True)
    try:
        destination.hardlink_to(environment.tarball)
    except OSError:
        shutil.copyfile(environment.tarball, destination)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)
