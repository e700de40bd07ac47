"""The env cache: each model's environment built once per content and shared, as the
`python_env.tar.gz` its python steps load through EXECUTION_ENV_PATH.

Environments are cached by content (normalized requirements, the target runtime, and the builder with
its fingerprint: interpreter and platform), so an unchanged environment is reused at once and models with
identical requirements share it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from packaging.utils import canonicalize_name

from packager.archives import extract, tree_members, write_tar_gz
from packager.cache import building, cache_root, locked
from packager.environments.builder import EnvBuilder
from packager.environments.requirements import (
    REQUIREMENTS_FILE,
    RequirementsError,
    check_constraints,
    read_requirements,
)
from packager.modeldir import ModelDir, TritonModel, env_path
from packager.settings import Runtime

TARBALL = "python_env.tar.gz"
# Bump when the way environments are built or packed changes, so that cached ones are rebuilt.
ENV_FORMAT = 3


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


def environment_key(
    requirements: list[str], runtime: Runtime, builder: str, fingerprint: dict[str, str]
) -> str:
    """The content address of an environment: everything that changes what gets built."""
    inputs = {
        "format": ENV_FORMAT,
        "requirements": requirements,
        "runtime": {
            "triton": runtime.triton_version,
            "python": runtime.python,
            "constraints": sorted(constraint.requirement for constraint in runtime.constraints),
        },
        "builder": builder,
        "fingerprint": fingerprint,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def ensure_environment(
    model: ModelDir, runtime: Runtime, builder: EnvBuilder, progress: bool = True
) -> Environment:
    """The model's environment for `runtime`, from the cache or built now by `builder`."""
    started = time.monotonic()
    requirements = read_requirements(model.path / REQUIREMENTS_FILE, runtime)
    fingerprint = builder.fingerprint(runtime.python)
    key = environment_key(requirements, runtime, builder.name, fingerprint)
    directory = cache_root() / "envs" / key[:24]
    if (directory / TARBALL).is_file():
        return Environment(key, directory, cache_hit=True, seconds=time.monotonic() - started)
    with locked(directory):
        if not (directory / TARBALL).is_file():
            _say(
                progress,
                f"{model.name}: building the {builder.name} environment {key[:12]} ({len(requirements)} requirements)",
            )
            _build(model, requirements, runtime, builder, fingerprint, key, directory)
            hit = False
        else:
            hit = True
    return Environment(key, directory, cache_hit=hit, seconds=time.monotonic() - started)


def _build(
    model: ModelDir,
    requirements: list[str],
    runtime: Runtime,
    builder: EnvBuilder,
    fingerprint: dict[str, str],
    key: str,
    directory: Path,
) -> None:
    with building(directory) as scratch:
        (scratch / "requirements.txt").write_text("\n".join(requirements) + "\n")
        (scratch / "constraints.txt").write_text("".join(f"{c.requirement}\n" for c in runtime.constraints))
        env = scratch / "build"
        started = time.monotonic()
        try:
            builder.build(scratch / "requirements.txt", scratch / "constraints.txt", runtime.python, env)
        except RequirementsError as error:
            raise RequirementsError(f"{model.path / REQUIREMENTS_FILE}: {error}") from None
        packages = _installed(env)
        check_constraints(model.path / REQUIREMENTS_FILE, packages, runtime)
        write_tar_gz(scratch / TARBALL, tree_members(env, keep=lambda name: "__pycache__" not in name))
        shutil.rmtree(env)
        extract(scratch / TARBALL, scratch / "unpacked", absolute_symlinks=True)
        (scratch / TARBALL).chmod(0o444)
        metadata = {
            "key": key,
            "model": model.name,
            "runtime": runtime.name,
            "builder": builder.name,
            "fingerprint": fingerprint,
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


def place(environment: Environment, destination: Path) -> None:
    """Put the environment's tarball at `destination` (a hard link to the cache where possible)."""
    destination.unlink(missing_ok=True)
    try:
        destination.hardlink_to(environment.tarball)
    except OSError:
        shutil.copyfile(environment.tarball, destination)


def place_in_steps(environment: Environment, triton_models: Mapping[str, TritonModel]) -> list[Path]:
    """Put the tarball where each python step's EXECUTION_ENV_PATH points; the paths it was put at."""
    placed = []
    for triton in triton_models.values():
        destination = env_path(triton)
        if destination is not None:
            place(environment, destination)
            placed.append(destination)
    return placed


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)
