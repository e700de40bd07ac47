"""Model weights tracked by DVC: check that each pointer's file is present and intact, and pull them.

Only the pointers of the models being processed are pulled (`dvc pull <their .dvc files>`).
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from packager.archives import file_digest
from packager.errors import EnvironmentFailure
from packager.modeldir.diagnostics import Diagnostic, display_path
from packager.modeldir.discovery import ModelDir
from packager.subprocesses import run_tool

DVC_COMMAND_VARIABLE = "PACKAGER_DVC"


@dataclass(frozen=True)
class Weight:
    """A file a DVC pointer stands for."""

    pointer: Path
    path: Path
    md5: str


def pointers(model: ModelDir) -> list[Path]:
    """The model's `*.dvc` pointer files, sorted."""
    return sorted(
        path
        for path in model.path.rglob("*.dvc")
        if not any(part.startswith(".") for part in path.relative_to(model.path).parts)
    )


def weights(model: ModelDir) -> list[Weight]:
    """The files the model's pointers stand for (validate has already checked the pointers' shape)."""
    found = []
    for pointer in pointers(model):
        document = yaml.safe_load(pointer.read_text())
        for out in document["outs"]:
            found.append(Weight(pointer, pointer.parent / out["path"], str(out["md5"])))
    return found


def check_weights(model: ModelDir) -> list[Diagnostic]:
    """A problem for every weight that is missing or differs from its pointer, naming the fixing command."""
    problems = []
    for weight in weights(model):
        fetch = f"`{dvc_command_text()} pull {display_path(weight.pointer)}`"
        if weight.md5.endswith(".dir"):
            if not weight.path.is_dir():
                problems.append(
                    Diagnostic(
                        weight.path, None, None, f"missing (tracked by DVC): fetch it with {fetch}", "weights"
                    )
                )
            continue
        if not weight.path.is_file():
            problems.append(
                Diagnostic(
                    weight.path, None, None, f"missing (tracked by DVC): fetch it with {fetch}", "weights"
                )
            )
            continue
        actual = file_digest(weight.path, "md5")
        if actual != weight.md5:
            message = (
                f"does not match its DVC pointer (md5 {actual}, pointer says {weight.md5}): restore it with "
                f"`{dvc_command_text()} checkout --force {display_path(weight.pointer)}` or fetch it with {fetch}; "
                "if you retrained on purpose, record it with `dvc add`"
            )
            problems.append(Diagnostic(weight.path, None, None, message, "weights"))
    return problems


def vouched_by_dvc(model: ModelDir) -> Callable[[Path], bool]:
    """Whether a file (absolute; where a link is, or where it leads) is one the model's DVC pointers stand
    for as they recorded it: a file output whose md5 is its pointer's, or a file under a directory output
    (whose listing is in DVC's cache, not the pointer)."""
    outputs = [(_placed(weight.path), weight.path.resolve(), weight.md5) for weight in weights(model)]

    def vouched(path: Path) -> bool:
        for placed, resolved, md5 in outputs:
            if md5.endswith(".dir"):
                if _placed(path).is_relative_to(placed):
                    return True
            elif _placed(path) in (placed, resolved):
                return file_digest(path, "md5") == md5
        return False

    return vouched


def _placed(path: Path) -> Path:
    """`path` with its directories resolved but not itself: where a link is, not where it leads."""
    return path.parent.resolve() / path.name


def dvc_command() -> list[str]:
    """How to run DVC: PACKAGER_DVC (a command line), else `dvc` on PATH."""
    configured = os.environ.get(DVC_COMMAND_VARIABLE)
    if configured:
        program, *arguments = shlex.split(configured)
        if "/" in program:  # a path relative to where the packager was started, wherever DVC runs
            program = os.path.abspath(program)
        return [program, *arguments]
    if shutil.which("dvc"):
        return ["dvc"]
    raise EnvironmentFailure(
        "DVC is not on PATH: install it (`pip install 'dvc[s3]'`), or build this repository's "
        "(`./pants package ci:dvc`) and set PACKAGER_DVC=dist/ci/dvc.pex"
    )


def dvc_command_text() -> str:
    try:
        return shlex.join(dvc_command())
    except EnvironmentFailure:
        return "dvc"


def pull(models: list[ModelDir], remote: str | None = None) -> None:
    """`dvc pull` exactly the pointers of `models` (nothing else of the repository)."""
    targets = [str(pointer) for model in models for pointer in pointers(model)]
    if not targets:
        return
    command = [*dvc_command(), "pull", *(["--remote", remote] if remote else []), *targets]
    run_tool(command, f"`{shlex.join(command)}`", cwd=models[0].path)
