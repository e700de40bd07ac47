"""Serving a model directory in a real Triton: stage a model repository (its Triton models, with the
environment where EXECUTION_ENV_PATH points), start a server with a launcher, and load every Triton model.
Shared by `serve` and `replay`; preparing the directory first is the preflight step's job.

The servers here have no GPU: a model whose instance groups ask for one is refused before a server starts,
or, where the launcher says `gpu_as_cpu`, its staged copy of config.pbtxt is rewritten to KIND_CPU (the
model directory and the artifact are never written to)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from packager.artifacts import Artifact, triton_models_in, verified
from packager.environments import Environment
from packager.modeldir import (
    TRITON_CONFIG,
    Diagnostic,
    TritonModel,
    env_path,
    gpu_diagnostic,
    gpu_groups,
    libraries_dir,
    library_files,
    top_model,
)
from packager.scratch import scratch_dir
from packager.triton.launcher import LOAD_TIMEOUT, Launcher, Ports, Server, UnservableModel
from packager.validation import ModelReport

ENV_MODES = ("unpacked", "packed")


@dataclass(frozen=True)
class Served:
    """Triton models loaded in a running server, and the one a request goes to by default."""

    server: Server
    repository: Path
    triton_models: Mapping[str, TritonModel]
    top_model: str
    env_mode: str  # how the environments were staged (ENV_MODES)
    load_timeout: float = LOAD_TIMEOUT  # the longest one load may take, reloads included
    gpu_as_cpu: bool = False  # instance groups that ask for a GPU are staged as KIND_CPU, reloads included


def lends_interpreter(models: Mapping[str, TritonModel], env_portable: bool | None) -> bool:
    """Whether the server must lend its interpreter: a python step has no environment of its own, or the
    environment is a venv, which leans on this machine's Python (`env_portable` False)."""
    bare = any(model.is_python and env_path(model) is None for model in models.values())
    return bare or env_portable is False


@contextmanager
def staged_repository(report: ModelReport, environment: Environment | None, env_mode: str) -> Iterator[Path]:
    """A temporary model repository holding the model's Triton models, with the environment in place
    and the shared libraries its steps import beside their model.py.

    Files are hard links to the model directory. `packed` puts the environment tarball where
    EXECUTION_ENV_PATH points (what ships); `unpacked` puts a link to the cached unpacked tree there,
    which Triton uses as is instead of unpacking it on every load.
    """
    with scratch_dir(f"repo-{report.model.name}") as repository:
        repository.chmod(0o755)  # a server in a container reads it as another user
        for name, triton in report.triton_models.items():
            stage_model(
                repository / name,
                triton,
                libs=libraries_dir(report.model.path),
                environment=environment,
                env_mode=env_mode,
            )
        yield repository


def stage_model(
    destination: Path,
    triton: TritonModel,
    *,
    libs: Path | None,
    environment: Environment | None,
    env_mode: str,
) -> None:
    """One Triton model's directory at `destination`: its files as hard links, the shared libraries its
    steps import, and the environment where EXECUTION_ENV_PATH points (see `staged_repository`)."""
    target = env_path(triton)
    skip = {target.name} if target is not None else set()
    shutil.copytree(
        triton.directory,
        destination,
        copy_function=_link_or_copy,
        ignore=lambda directory, names: [
            n for n in names if n == "__pycache__" or (n in skip and Path(directory) == triton.directory)
        ],
    )
    for relative, path in library_files(triton, libs):
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(str(path), str(destination / relative))
    if target is not None and environment is not None:
        staged = destination / target.relative_to(triton.directory)
        if env_mode == "packed":
            _link_or_copy(str(environment.tarball), str(staged))
        else:
            staged.symlink_to(environment.unpacked, target_is_directory=True)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


@contextmanager
def loaded(
    repository: Path,
    models: Mapping[str, TritonModel],
    *,
    launcher: Launcher,
    log_path: Path,
    env_portable: bool | None,
    load_timeout: float = LOAD_TIMEOUT,
    ports: Ports = Ports(),
) -> Iterator[Server]:
    """A freshly started server on `repository` (listening on `ports`) with `models` loaded, each load
    within `load_timeout` seconds; stopped and cleaned up on exit. The server's interpreter is lent only
    where a step needs it (see `lends_interpreter`)."""
    check_backends(models, launcher)
    fit_devices(repository, models, launcher)
    with launcher.start(
        repository, log_path, lend_interpreter=lends_interpreter(models, env_portable), ports=ports
    ) as server:
        load_all(server, models, load_timeout)
        yield server


def check_backends(models: Mapping[str, TritonModel], launcher: Launcher) -> None:
    """Raise UnservableModel, naming each model and backend, when the launcher's Triton lacks one."""
    missing = {
        name: model.backend()
        for name, model in models.items()
        if model.backend() not in {"", *launcher.backends}
    }
    if missing:
        needs = ", ".join(f"{name} needs the {backend} backend" for name, backend in sorted(missing.items()))
        raise UnservableModel(
            f"{needs}; the {launcher.name} launcher's Triton has only {', '.join(sorted(launcher.backends))}: "
            "serve it with a runtime whose server has it"
        )


def fit_devices(repository: Path, models: Mapping[str, TritonModel], launcher: Launcher) -> None:
    """Models staged at `repository/<name>` whose instance groups ask for a GPU, which no server here has:
    refused (see `refuse_gpus`), or, where the launcher says `gpu_as_cpu`, run as KIND_CPU from a rewritten
    staged copy of their config."""
    refuse_gpus(repository, models, launcher)
    for name, model in models.items():
        if gpu_groups(model.config):
            write_staged_config(repository / name / TRITON_CONFIG, on_cpu(model.config))


def refuse_gpus(unpacked: Path, models: Mapping[str, TritonModel], launcher: Launcher) -> None:
    """Raise UnservableModel naming each config line that asks for a GPU, and the override, unless the
    launcher says `gpu_as_cpu`. A model under `unpacked` (an artifact's) is named by its path there."""
    if launcher.gpu_as_cpu:
        return
    message = (
        f"asks for a GPU, and the {launcher.name} launcher's Triton has none (it would refuse the model: "
        "no GPUs are available): run with --cpu, or set gpu_as_cpu = true in the runtime's packager.toml "
        "table, to run it as KIND_CPU in the staged copy only (what ships keeps KIND_GPU)"
    )
    lines = [
        _shown(gpu_diagnostic(model, index, message), unpacked)
        for model in models.values()
        for index in gpu_groups(model.config)
    ]
    if lines:
        raise UnservableModel("\n".join(lines))


def _shown(diagnostic: Diagnostic, unpacked: Path) -> str:
    if not diagnostic.path.is_relative_to(unpacked):
        return str(diagnostic)
    return f"the artifact's {dataclasses.replace(diagnostic, path=diagnostic.path.relative_to(unpacked))}"


def on_cpu(config: model_config_pb2.ModelConfig) -> model_config_pb2.ModelConfig:
    """A copy of `config` with every instance group that asks for a GPU as KIND_CPU (its gpus cleared)."""
    copy = model_config_pb2.ModelConfig()
    copy.CopyFrom(config)
    for index in gpu_groups(copy):
        group = copy.instance_group[index]
        group.kind = model_config_pb2.ModelInstanceGroup.KIND_CPU
        del group.gpus[:]
    return copy


def write_staged_config(path: Path, config: model_config_pb2.ModelConfig) -> None:
    """Write `config` as the staged copy at `path`, replacing the file, never writing through it: a staged
    config is a hard link to the model directory's."""
    path.unlink(missing_ok=True)
    path.write_text(text_format.MessageToString(config))


def parsed_config(document: Mapping[str, object]) -> model_config_pb2.ModelConfig:
    """A config in Triton's JSON form, as the ModelConfig protobuf (fields a newer Triton adds ignored)."""
    config = model_config_pb2.ModelConfig()
    json_format.ParseDict(dict(document), config, ignore_unknown_fields=True)
    return config


def served_config(server: Server, model: str) -> model_config_pb2.ModelConfig:
    """The config a loaded model runs with, as Triton completed it."""
    return parsed_config(server.model_config(model))


def completed_from(server: Server, models: Mapping[str, TritonModel]) -> dict[str, TritonModel]:
    """`models` (loaded in `server`), each whose config Triton completes given the config it completed."""
    return {
        name: (
            dataclasses.replace(model, completed=served_config(server, name))
            if model.completion_reason
            else model
        )
        for name, model in models.items()
    }


def load_all(server: Server, models: Mapping[str, TritonModel], timeout: float = LOAD_TIMEOUT) -> None:
    """Load every model: the steps at once (Triton loads each on a thread of its own, so python steps start
    their stubs side by side), then the ensembles, which find their steps loaded. The first failure, in
    name order, is raised once every load has ended."""
    steps = sorted(name for name, model in models.items() if not model.is_ensemble)
    with ThreadPoolExecutor(max_workers=max(1, len(steps))) as pool:
        for _ in pool.map(lambda name: server.load(name, timeout), steps):
            pass
    for name in sorted(set(models) - set(steps)):
        server.load(name, timeout)


@contextmanager
def launched(
    report: ModelReport,
    environment: Environment | None,
    *,
    launcher: Launcher,
    log_path: Path,
    env_mode: str = "unpacked",
    load_timeout: float = LOAD_TIMEOUT,
    ports: Ports = Ports(),
) -> Iterator[Served]:
    """A prepared model directory, staged and loaded in a server that `launcher` starts (with the packed
    environment where the launcher cannot serve an unpacked one)."""
    mode = env_mode if launcher.unpacked_envs else "packed"
    with staged_repository(report, environment, mode) as repository:
        portable = environment.portable if environment is not None else None
        with loaded(
            repository,
            report.triton_models,
            launcher=launcher,
            log_path=log_path,
            env_portable=portable,
            load_timeout=load_timeout,
            ports=ports,
        ) as server:
            top = top_model(report.triton_models)
            served = Served(
                server, repository, report.triton_models, top, mode, load_timeout, launcher.gpu_as_cpu
            )
            yield served


@contextmanager
def artifact_launched(
    archive: Path,
    launcher: Launcher,
    *,
    log_path: Path,
    public_key: Path | None = None,
    load_timeout: float = LOAD_TIMEOUT,
    ports: Ports = Ports(),
) -> Iterator[tuple[Artifact, Served]]:
    """A built artifact, verified as it is unpacked (nothing unverified runs), loaded in a server."""
    with verified(archive, public_key) as (artifact, repository):
        triton_models = triton_models_in(repository)
        portable = artifact.manifest.get("env_portable")
        with loaded(
            repository,
            triton_models,
            launcher=launcher,
            log_path=log_path,
            env_portable=portable,
            load_timeout=load_timeout,
            ports=ports,
        ) as server:
            top = str(artifact.manifest["top_model"])
            completed = completed_from(server, triton_models)
            served = Served(server, repository, completed, top, "packed", load_timeout, launcher.gpu_as_cpu)
            yield artifact, served
