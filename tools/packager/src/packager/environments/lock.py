"""Locking a model's requirements with uv: every package pinned with its hashes, resolved for the
runtime's Python and platform (not the build machine's), into requirements.lock beside requirements.txt.
Builds install only from the lock, with hash checking and no source builds."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from packager.environments.requirements import read_requirements, run_installer
from packager.errors import EnvironmentFailure
from packager.modeldir import (
    LOCK_FILE,
    REQUIREMENTS_FILE,
    LockHeader,
    ModelDir,
    RequirementsError,
    digest,
    lock_problems,
    read_lock_header,
)
from packager.partials import partial_file
from packager.scratch import scratch_dir
from packager.settings import Runtime

UV_VARIABLE = "PACKAGER_UV"


@dataclass(frozen=True)
class Locked:
    """A model's lock, and whether locking changed it."""

    path: Path
    changed: bool
    packages: int


def uv_command() -> list[str]:
    """How to run uv: PACKAGER_UV, else the binary of the `uv` package the packager depends on, else PATH."""
    if os.environ.get(UV_VARIABLE):
        return [os.environ[UV_VARIABLE]]
    try:
        from uv import find_uv_bin

        return [find_uv_bin()]
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return [found]
    raise EnvironmentFailure(f"uv is not installed: `pip install uv`, or set {UV_VARIABLE} to its path")


def lock_header(requirements: list[str], runtime: Runtime) -> LockHeader:
    """What a lock of `requirements` for `runtime` records about its making."""
    constraints = [constraint.requirement for constraint in runtime.constraints]
    return LockHeader(digest(requirements), runtime.python, runtime.platform, digest(constraints))


def lock_model(model: ModelDir, runtime: Runtime, write: bool = True) -> Locked:
    """Resolve requirements.txt plus the runtime's constraints into requirements.lock (written only when
    its content changes, and never with `write=False`: then it only says whether it would)."""
    requirements = read_requirements(model.path / REQUIREMENTS_FILE, runtime)  # refusals, with the line
    with scratch_dir("lock") as scratch:
        given, constraints, out = (
            Path(scratch) / "requirements.txt",
            Path(scratch) / "constraints.txt",
            Path(scratch) / "lock",
        )
        given.write_text("".join(f"{line}\n" for line in requirements))
        constraints.write_text("".join(f"{c.requirement}\n" for c in runtime.constraints))
        command = [*uv_command(), "pip", "compile", str(given), "--constraint", str(constraints)]
        command += ["--python-version", runtime.python, "--python-platform", runtime.platform]
        command += ["--generate-hashes", "--no-header", "--no-annotate", "--quiet", "--output-file", str(out)]
        try:
            run_installer(command, "uv pip compile")
        except RequirementsError as error:
            raise RequirementsError(f"{model.path / REQUIREMENTS_FILE}: {error}") from None
        pinned = out.read_text()
    header = lock_header(requirements, runtime)
    text = (
        f"{header.line()}\n"
        f"# Written by `packager lock` from {REQUIREMENTS_FILE} for CPython {runtime.python} on {runtime.platform} "
        f"with the runtime's constraints: edit {REQUIREMENTS_FILE}, run it again, and commit both.\n{pinned}"
    )
    lock = model.path / LOCK_FILE
    changed = not lock.is_file() or lock.read_text() != text
    if changed and write:
        with partial_file(lock) as partial:
            partial.write_text(text)
            os.replace(partial, lock)
    packages = sum(
        1 for line in pinned.splitlines() if line and not line[0].isspace() and not line.startswith("#")
    )
    return Locked(lock, changed, packages)


def checked_lock(model: ModelDir, runtime: Runtime) -> Path:
    """The model's lock, refused unless it matches requirements.txt and was made for `runtime`."""
    problems = lock_problems(model.path)
    if problems:
        raise RequirementsError(str(problems[0]))
    lock = model.path / LOCK_FILE
    header = read_lock_header(lock)
    expected = lock_header(read_requirements(model.path / REQUIREMENTS_FILE, runtime), runtime)
    if header != expected:
        assert header is not None  # lock_problems refused a lock without one
        raise RequirementsError(
            f"{lock}:1:1: locked for CPython {header.python}, {header.platform} and other constraints than "
            f"runtime {runtime.name}'s (CPython {runtime.python}, {runtime.platform}): run "
            f"`packager lock --runtime {runtime.name} {model.name}`"
        )
    return lock


def install_from_lock(lock: Path, python: Path) -> None:
    """Install exactly what the lock pins into the environment of `python`: hashes checked, no
    dependency resolution, no source builds (no build code of a requirement runs), files copied."""
    command = [*uv_command(), "pip", "install", "--python", str(python), "--require-hashes", "--no-deps"]
    command += ["--no-build", "--link-mode", "copy", "--quiet", "--requirement", str(lock)]
    run_installer(command, "uv pip install")
