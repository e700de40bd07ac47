"""The env builder plug point: its interface, and the registry of builders by the name a runtime's
`env_builder` gives."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from packager.registry import Registry
from packager.settings import Runtime


class EnvBuilder(Protocol):
    """Turns a requirements file into an unpacked, relocatable environment whose bin/activate works,
    for the CPython minor of a runtime's stub (how it gets that Python is the builder's business)."""

    name: str

    def fingerprint(self, python: str) -> dict[str, str]:
        """What decides this builder's output for CPython `python`, besides the requirements and the
        runtime (it joins the cache key); raises when this machine cannot build for that Python."""

    def build(self, requirements: Path, constraints: Path, python: str, destination: Path) -> None:
        """Create the environment at `destination` (which does not exist yet)."""


ENV_BUILDERS: Registry[Callable[[], EnvBuilder]] = Registry(
    "env builder",
    {
        "venv": "packager.environments.venv:VenvBuilder",
        "conda": "packager.environments.conda:CondaBuilder",
    },
)


def env_builder_for(runtime: Runtime) -> EnvBuilder:
    """The builder the runtime's configuration names."""
    return ENV_BUILDERS.factory(runtime.env_builder)()
