"""The env builder plug point: its interface, and the registry of builders by the name a runtime's
`env_builder` gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from packager.registry import Registry
from packager.reporting import Report, silent
from packager.settings import Runtime


class EnvBuilder(Protocol):
    """Turns a model's lock into an unpacked, relocatable environment whose bin/activate works, for the
    CPython minor of a runtime's stub (how it gets that Python is the builder's business)."""

    name: str
    portable: bool  # whether its environments carry their own interpreter (else: this machine's)

    def fingerprint(self, python: str) -> dict[str, str]:
        """What decides this builder's output for CPython `python`, besides the lock and the runtime
        (it joins the cache key); raises when this machine cannot build for that Python."""

    def build(self, lock: Path, python: str, destination: Path) -> None:
        """Create the environment at `destination` (which does not exist yet) with what `lock` pins."""


ENV_BUILDERS: Registry[Callable[[Runtime, Report], EnvBuilder]] = Registry(
    "env builder",
    {
        "venv": "packager.environments.venv:VenvBuilder.for_runtime",
        "conda": "packager.environments.conda:CondaBuilder.for_runtime",
    },
)


def env_builder_for(runtime: Runtime, report: Report = silent) -> EnvBuilder:
    """The builder the runtime's configuration names, saying what it does (a slow step) to `report`."""
    return ENV_BUILDERS.factory(runtime.env_builder)(runtime, report)
