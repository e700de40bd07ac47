"""Execution environments: a model's requirements.txt built into the `python_env.tar.gz` its python
steps load through EXECUTION_ENV_PATH, for the Python of the target Triton's stub.

Owns the env builder plug point (`EnvBuilder` and its registry `ENV_BUILDERS`; one module per builder:
`venv`, `conda`, with the `local` conda channel made from this machine's CPython in `channel`), locking
requirements with uv (`lock`), checking them against a runtime's constraints, finding interpreters, and
the content-addressed env cache.

Public: EnvBuilder, ENV_BUILDERS, env_builder_for, Environment, ensure_environment, cached_environment,
environment_key,
place, place_in_steps, TARBALL, read_requirements, lock_model, checked_lock, Locked, uv_command,
Interpreter, find_interpreter. Backends are reached through the registry (`packager.environments.venv.VenvBuilder`
and `packager.environments.conda.CondaBuilder` for direct use).
"""

from packager.environments.builder import ENV_BUILDERS, EnvBuilder, env_builder_for
from packager.environments.cache import (
    TARBALL,
    Environment,
    cached_environment,
    ensure_environment,
    environment_key,
    place,
    place_in_steps,
)
from packager.environments.interpreters import Interpreter, find_interpreter
from packager.environments.lock import Locked, checked_lock, lock_model, uv_command
from packager.environments.requirements import read_requirements

__all__ = [
    "ENV_BUILDERS",
    "EnvBuilder",
    "env_builder_for",
    "TARBALL",
    "Environment",
    "ensure_environment",
    "cached_environment",
    "environment_key",
    "place",
    "place_in_steps",
    "Interpreter",
    "find_interpreter",
    "Locked",
    "checked_lock",
    "lock_model",
    "uv_command",
    "read_requirements",
]
