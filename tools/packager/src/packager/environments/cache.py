"""The env cache: each model's environment built once per content and shared, as the
`python_env.tar.gz` its python steps load through EXECUTION_ENV_PATH.

Environments are built from the model's lock only, and cached by content (the lock, the target runtime,
and the builder with its fingerprint: interpreter or channels, platform), so an unchanged environment is
reused at once and models with identical locks share it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from packager.archives import extract, tree_members, write_tar_gz
from packager.cache import building, cache_root, locked
from packager.environments.builder import EnvBuilder
from packager.environments.lock import checked_lock
from packager.environments.requirements import check_constraints
from packager.modeldir import LOCK_FILE, ModelDir, RequirementsError, TritonModel, env_path
from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.subprocesses import credential_free

TARBALL = "python_env.tar.gz"
# Bump when the way environments are built or packed changes, so that cached ones are rebuilt.
ENV_FORMAT = 6


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

    @property
    def portable(self) -> bool:
        """Whether it carries its own interpreter (a venv leans on this machine's)."""
        return bool(self.metadata().get("portable", False))

    def metadata(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.directory / "env.json").read_text())
        return loaded


def environment_key(lock: str, runtime: Runtime, *, builder: str, fingerprint: dict[str, str]) -> str:
    """The content address of an environment: everything that changes what gets built."""
    inputs = {
        "format": ENV_FORMAT,
        "lock": hashlib.sha256(lock.encode()).hexdigest(),
        "runtime": {
            "triton": runtime.triton_version,
            "python": runtime.python,
            "platform": runtime.platform,
            "constraints": sorted(constraint.requirement for constraint in runtime.constraints),
        },
        "builder": builder,
        "fingerprint": fingerprint,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class _Address:
    """Where a model's environment for a runtime is (or goes) in the cache, and what it is built from."""

    lock: Path
    pins: str
    fingerprint: dict[str, str]
    key: str

    @property
    def directory(self) -> Path:
        return cache_root() / "envs" / self.key[:24]


def _address(model: ModelDir, runtime: Runtime, builder: EnvBuilder) -> _Address:
    lock = checked_lock(model, runtime)
    pins = lock.read_text()
    fingerprint = builder.fingerprint(runtime.python)
    return _Address(
        lock, pins, fingerprint, environment_key(pins, runtime, builder=builder.name, fingerprint=fingerprint)
    )


def ensure_environment(
    model: ModelDir, runtime: Runtime, builder: EnvBuilder, *, report: Report = silent
) -> Environment:
    """The model's environment for `runtime`, from the cache or built now by `builder` from its lock."""
    started = time.monotonic()
    address = _address(model, runtime, builder)
    key, directory = address.key, address.directory
    if (directory / TARBALL).is_file():
        return Environment(key, directory, cache_hit=True, seconds=time.monotonic() - started)
    with locked(directory):
        if not (directory / TARBALL).is_file():
            report(
                f"{model.name}: building the {builder.name} environment {key[:12]} from {address.lock.name}"
            )
            _build(
                model,
                address.pins,
                runtime=runtime,
                builder=builder,
                fingerprint=address.fingerprint,
                key=key,
                directory=directory,
            )
            hit = False
        else:
            hit = True
    return Environment(key, directory, cache_hit=hit, seconds=time.monotonic() - started)


def cached_environment(model: ModelDir, runtime: Runtime, builder: EnvBuilder) -> Environment | None:
    """The model's environment for `runtime` where the cache already holds it; None where it would have to
    be built (nothing is built here), or its lock is not current."""
    started = time.monotonic()
    try:
        address = _address(model, runtime, builder)
    except RequirementsError:
        return None
    if not (address.directory / TARBALL).is_file():
        return None
    return Environment(address.key, address.directory, cache_hit=True, seconds=time.monotonic() - started)


def _build(
    model: ModelDir,
    pins: str,
    *,
    runtime: Runtime,
    builder: EnvBuilder,
    fingerprint: dict[str, str],
    key: str,
    directory: Path,
) -> None:
    with building(directory) as scratch:
        (scratch / LOCK_FILE).write_text(pins)
        env = scratch / "build"
        started = time.monotonic()
        try:
            builder.build(scratch / LOCK_FILE, runtime.python, env)
        except RequirementsError as error:
            raise RequirementsError(f"{model.path / LOCK_FILE}: {error}") from None
        packages = _installed(env)
        check_constraints(model.path / LOCK_FILE, packages, runtime)
        write_tar_gz(scratch / TARBALL, tree_members(env, keep=lambda name: "__pycache__" not in name))
        shutil.rmtree(env)
        extract(scratch / TARBALL, scratch / "unpacked", absolute_symlinks=True)
        _precompile(scratch / "unpacked")
        (scratch / TARBALL).chmod(0o444)
        metadata = {
            "key": key,
            "model": model.name,
            "runtime": runtime.name,
            "builder": builder.name,
            "portable": builder.portable,
            "fingerprint": fingerprint,
            "packages": packages,
            "bytes": (scratch / TARBALL).stat().st_size,
            "build_seconds": round(time.monotonic() - started, 2),
        }
        (scratch / "env.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def _precompile(unpacked: Path) -> None:
    """Compile the unpacked tree's modules to bytecode once, with its own interpreter, so that a server
    started on it imports instead of compiling numpy and the rest again at every start (Triton's sandbox
    mounts it read-only, so nothing could cache them there). The tarball that ships stays source-only.
    `-I -S` keeps the env's own code (its .pth files) from running; a module that does not compile is left
    to compile at import, as without this step."""
    python = unpacked / "bin" / "python"
    if not python.exists():
        return
    command = [str(python), "-I", "-S", "-m", "compileall", "-q", "-j", "0", str(unpacked / "lib")]
    try:
        subprocess.run(command, env=credential_free(dict(os.environ)), capture_output=True, check=False)
    except OSError:  # an interpreter for another platform: the server compiles at import, as before
        return


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
