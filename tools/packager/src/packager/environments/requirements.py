"""A model's requirements checked against a runtime: its constraints refused up front (with the line),
and what got installed checked again; installer failures sorted into the model's and the machine's."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from packager.modeldir import RequirementsError, parse_requirements
from packager.settings import Runtime
from packager.subprocesses import ToolFailure, run_tool

# Installer words for requirements that cannot be met (the model's problem), and for a network that
# failed (the machine's problem, which pip also ends with "No matching distribution").
UNSATISFIABLE = (
    "No matching distribution found",
    "ResolutionImpossible",
    "conflicting dependencies",
    "No solution found when resolving",
    "was not found in the package registry",
    "has no wheels with a matching platform tag",
    "not in the lock",
    "hash mismatch",
    "Hash mismatch",
    "do not match the hashes",
)
NETWORK_TROUBLE = (
    "NewConnectionError",
    "ConnectTimeoutError",
    "Max retries exceeded",
    "ProxyError",
    "SSLError",
    "error sending request",
    "dns error",
)


def read_requirements(path: Path, runtime: Runtime) -> list[str]:
    """The requirements in a normalized form (one per line, sorted), refusing what breaks `runtime`."""
    normalized = []
    for line in parse_requirements(path):
        if line.requirement is not None:
            _refuse_conflicts(path, line.number, line.requirement, runtime)
        normalized.append(line.text)
    return sorted(normalized)


def _refuse_conflicts(path: Path, number: int, requirement: Requirement, runtime: Runtime) -> None:
    """Refuse a requirement whose own bounds exclude every version a runtime constraint allows."""
    for constraint in runtime.constraints:
        bound = Requirement(constraint.requirement)
        if canonicalize_name(bound.name) != canonicalize_name(requirement.name):
            continue
        for spec in requirement.specifier:
            if spec.operator in ("==", "===", ">=", ">", "~=") and not bound.specifier.contains(
                spec.version, prereleases=True
            ):
                raise RequirementsError(
                    f"{path}:{number}: {requirement} conflicts with {constraint.requirement} on runtime "
                    f"{runtime.name!r}: {constraint.reason}; pin {constraint.requirement}"
                )


def check_constraints(requirements: Path, packages: dict[str, str], runtime: Runtime) -> None:
    """Refuse an environment whose installed packages (name -> version) break a runtime constraint."""
    for constraint in runtime.constraints:
        bound = Requirement(constraint.requirement)
        installed = packages.get(canonicalize_name(bound.name))
        if installed is not None and not bound.specifier.contains(installed, prereleases=True):
            raise RequirementsError(
                f"{requirements}: the environment got {bound.name} {installed}, which breaks "
                f"runtime {runtime.name!r} ({constraint.reason}); pin {constraint.requirement}"
            )


def run_installer(command: list[str], what: str) -> None:
    """Run pip or uv on a model's requirements, with no credentials in its environment (builds run
    third-party code). Requirements it cannot satisfy (a package that does not exist, a conflict with the
    runtime's constraints, no wheel for the platform, a stale lock) are the model's error
    (RequirementsError, exit 1); anything else is the machine's."""
    try:
        run_tool(command, what, untrusted=True)
    except ToolFailure as failure:
        if any(word in failure.output for word in UNSATISFIABLE) and not any(
            word in failure.output for word in NETWORK_TROUBLE
        ):
            raise RequirementsError(f"{what} cannot satisfy these requirements: {failure}") from None
        raise
