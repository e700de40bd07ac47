"""What packager.toml says, as typed values with the embedded defaults (reading the file is `config`).

Every stage takes the part it needs: environments and launchers a `Runtime`, publishing the `Stores`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from packager.errors import PackagerError

NUMPY_2_REASON = "Triton 2.51's python backend returns empty outputs with numpy 2"
# Triton's images since 23.x are Ubuntu 22.04 or newer (glibc 2.35) on x86_64.
DEFAULT_PLATFORM = "x86_64-manylinux_2_28"


# `runtime = "auto"`: the runtime named "container" where an engine answers and its image is here, else
# the one named "local" (resolved by the workspace, which can ask the engine).
AUTO = "auto"


class ConfigError(PackagerError):
    """packager.toml is not valid, or names something it does not define."""


@dataclass(frozen=True)
class Constraint:
    """A requirement every environment for a runtime must satisfy, and why."""

    requirement: str
    reason: str


@dataclass(frozen=True)
class Runtime:
    """The Triton that serves the models: its version, its stub's Python, and what breaks it."""

    name: str
    triton_version: str
    python: str
    server_package: str = ""
    launcher: str = "local"
    env_builder: str = "venv"
    description: str = ""
    constraints: tuple[Constraint, ...] = ()
    image: str = ""  # a container runtime's image ("": the one `packager image build` makes for it)
    shm_size: str = "256m"  # /dev/shm of a container runtime's server
    network: bool = False  # whether model code may reach the network (off: only the packager reaches it)
    # The servers here have no GPU: KIND_GPU instance groups are refused before a server starts, unless
    # this (or --cpu) runs them as KIND_CPU, in the staged copy of the config only (what ships is unchanged).
    gpu_as_cpu: bool = False
    platform: str = DEFAULT_PLATFORM  # what requirements are locked for (uv's --python-platform)
    # Where the conda builder gets Python ("local": made from this machine's CPython).
    channels: tuple[str, ...] = ("conda-forge",)


DEFAULT_RUNTIME = Runtime(
    name="local",
    description="Triton 2.51.0 from the nvidia-pytriton 0.7.0 wheel, run as a local process (CPU)",
    triton_version="2.51.0",
    python="3.11",
    server_package="nvidia-pytriton==0.7.0",
    env_builder="conda",
    constraints=(Constraint("numpy<2", NUMPY_2_REASON),),
)


@dataclass(frozen=True)
class Stores:
    """Where artifacts are published: URIs (s3://bucket/prefix, file:///dir, or file:dir relative to the
    repository root) and which branches publish to production."""

    staging: str = "file:dist/stores/staging"
    production: str = "file:dist/stores/production"
    production_branches: tuple[str, ...] = ("main",)


OverBudget = Literal["refuse", "warn"]  # what a push over the cold-start budget gets
OVER_BUDGET: tuple[OverBudget, ...] = ("refuse", "warn")


@dataclass(frozen=True)
class ColdStartBudget:
    """[endpoint]: how long an artifact's cold start on a multi-model endpoint may take (SageMaker answers
    ModelNotReadyException past 60 s), and whether a push over it is refused or only warned about."""

    seconds: float = 30.0
    over_budget: OverBudget = "refuse"


@dataclass(frozen=True)
class Config:
    """Everything packager.toml says, with defaults filled in."""

    path: Path | None
    default_runtime: str = DEFAULT_RUNTIME.name
    runtimes: dict[str, Runtime] = field(default_factory=lambda: {DEFAULT_RUNTIME.name: DEFAULT_RUNTIME})
    stores: Stores = Stores()
    public_key: Path | None = None  # [signing] public_key: artifacts must carry a signature it verifies
    cold_start: ColdStartBudget = ColdStartBudget()

    def runtime(self, name: str | None = None) -> Runtime:
        """The named runtime, or the default one."""
        chosen = name or self.default_runtime
        if chosen not in self.runtimes:
            where = self.path or "the embedded defaults"
            raise ConfigError(f"no runtime {chosen!r} in {where} (known: {', '.join(sorted(self.runtimes))})")
        return self.runtimes[chosen]
