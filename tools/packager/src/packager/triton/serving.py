"""Bring a model directory up in a real Triton: validate, check weights, build its environment, stage a
model repository, start the server and load every Triton model. Shared by `serve` and `replay`."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from packager.config import Runtime
from packager.diagnostics import Diagnostic
from packager.discovery import ModelDir
from packager.environments import Environment, ensure_environment, env_path
from packager.errors import PackagerError
from packager.model_config import TritonModel
from packager.triton_runtime import LOAD_TIMEOUT, Server, launcher_for
from packager.validation import ModelReport, validate_model
from packager.weights import check_weights

ENV_MODES = ("unpacked", "packed")


class NotServable(PackagerError):
    """The model directory has problems that must be fixed before it can run."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("\n".join(str(diagnostic) for diagnostic in diagnostics))
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class Served:
    """A model directory loaded in a running server."""

    report: ModelReport
    server: Server
    environment: Environment | None
    repository: Path

    @property
    def top_model(self) -> str:
        return top_model(self.report.triton_models)


def top_model(triton_models: dict[str, TritonModel]) -> str:
    """The model a request goes to by default: the top-level ensemble, or the only Triton model."""
    used = {
        step.model_name for model in triton_models.values() for step in model.config.ensemble_scheduling.step
    }
    tops = sorted(
        name
        for name, model in triton_models.items()
        if name not in used and (model.is_ensemble or len(triton_models) == 1)
    )
    return tops[0] if tops else sorted(triton_models)[0]


def prepare(
    model: ModelDir, runtime: Runtime, progress: bool = True
) -> tuple[ModelReport, Environment | None]:
    """Validate the model and its weights, and build (or reuse) its environment."""
    report = validate_model(model)
    problems = report.diagnostics or check_weights(model)
    if problems:
        raise NotServable(problems)
    uses_env = any(env_path(triton) is not None for triton in report.triton_models.values())
    environment = ensure_environment(model, runtime, progress) if uses_env else None
    return report, environment


@contextmanager
def staged_repository(report: ModelReport, environment: Environment | None, env_mode: str) -> Iterator[Path]:
    """A temporary model repository holding the model's Triton models, with the environment in place.

    Files are hard links to the model directory. `packed` puts the environment tarball where
    EXECUTION_ENV_PATH points (what ships); `unpacked` puts a link to the cached unpacked tree there,
    which Triton uses as is instead of unpacking it on every load.
    """
    repository = Path(tempfile.mkdtemp(prefix=f"packager-repo-{report.model.name}-"))
    try:
        for name, triton in report.triton_models.items():
            target = env_path(triton)
            skip = {target.name} if target is not None else set()
            shutil.copytree(
                triton.directory,
                repository / name,
                copy_function=_link_or_copy,
                ignore=lambda directory, names: [
                    n
                    for n in names
                    if n == "__pycache__" or (n in skip and Path(directory) == triton.directory)
                ],
            )
            if target is not None and environment is not None:
                staged = repository / name / target.relative_to(triton.directory)
                if env_mode == "packed":
                    _link_or_copy(str(environment.tarball), str(staged))
                else:
                    staged.symlink_to(environment.unpacked, target_is_directory=True)
        yield repository
    finally:
        shutil.rmtree(repository, ignore_errors=True)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


@contextmanager
def loaded(
    repository: Path,
    models: Iterable[str],
    runtime: Runtime,
    log_path: Path,
    load_timeout: float = LOAD_TIMEOUT,
    progress: bool = True,
) -> Iterator[Server]:
    """A freshly started server on `repository` with `models` loaded; stopped and cleaned up on exit."""
    with launcher_for(runtime, progress).start(repository, log_path) as server:
        for name in sorted(models):
            server.load(name, load_timeout)
        yield server


@contextmanager
def launched(
    report: ModelReport,
    environment: Environment | None,
    runtime: Runtime,
    log_path: Path,
    env_mode: str = "unpacked",
    load_timeout: float = LOAD_TIMEOUT,
    progress: bool = True,
) -> Iterator[Served]:
    """A prepared model directory, staged and loaded in a freshly started server."""
    with staged_repository(report, environment, env_mode) as repository:
        with loaded(repository, report.triton_models, runtime, log_path, load_timeout, progress) as server:
            yield Served(report, server, environment, repository)
