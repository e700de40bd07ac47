"""Execution environments: a model's requirements.txt built into the `python_env.tar.gz` its python
steps load through EXECUTION_ENV_PATH, for the Python of the target Triton's stub.

Owns the env builder plug point (`EnvBuilder` and its registry `ENV_BUILDERS`; one module per builder:
`venv`, `conda`), reading requirements against a runtime's constraints, finding interpreters, and the
content-addressed env cache.

Public: EnvBuilder, ENV_BUILDERS, env_builder_for, Environment, ensure_environment, environment_key,
place, place_in_steps, TARBALL, RequirementsError, read_requirements, REQUIREMENTS_FILE, Interpreter,
find_interpreter. Backends are reached through the registry (`packager.environments.venv.VenvBuilder`
and `packager.environments.conda.CondaBuilder` for direct use).
"""

from packager.environments.builder import ENV_BUILDERS, EnvBuilder, env_builder_for
from packager.environments.cache import (
    TARBALL,
    Environment,
    ensure_environment,
    environment_key,
    place,
    place_in_steps,
)
from packager.environments.interpreters import Interpreter, find_interpreter
from packager.environments.requirements import REQUIREMENTS_FILE, RequirementsError, read_requirements

__all__ = [
    "ENV_BUILDERS",
    "EnvBuilder",
    "env_builder_for",
    "TARBALL",
    "Environment",
    "ensure_environment",
    "environment_key",
    "place",
    "place_in_steps",
    "Interpreter",
    "find_interpreter",
    "REQUIREMENTS_FILE",
    "RequirementsError",
    "read_requirements",
]
