"""A model's requirements.txt, read into a normalized form, and checked against a runtime's constraints."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from packager.errors import PackagerError
from packager.settings import Runtime
from packager.subprocesses import ToolFailure, run_tool

REQUIREMENTS_FILE = "requirements.txt"
# pip's words for requirements that cannot be met (the model's problem), and for a network that failed
# (the machine's problem, which pip also ends with "No matching distribution").
UNSATISFIABLE = ("No matching distribution found", "ResolutionImpossible", "conflicting dependencies")
NETWORK_TROUBLE = (
    "NewConnectionError",
    "ConnectTimeoutError",
    "Max retries exceeded",
    "ProxyError",
    "SSLError",
)


class RequirementsError(PackagerError):
    """requirements.txt cannot be built for the target runtime."""


def read_requirements(path: Path, runtime: Runtime) -> list[str]:
    """The requirements in a normalized form (one per line, sorted), refusing what breaks `runtime`."""
    if not path.is_file():
        raise RequirementsError(f"{path}: missing; list the packages the model's python steps import")
    normalized = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("-"):
            if line.startswith(("-e", "--editable", "-r", "--requirement", "-c", "--constraint")):
                raise RequirementsError(
                    f"{path}:{number}: {line.split()[0]} is not supported; list every package in this file"
                )
            normalized.append(" ".join(line.split()))
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise RequirementsError(f"{path}:{number}: not a requirement ({error})") from None
        if requirement.url:
            raise RequirementsError(
                f"{path}:{number}: URL requirements cannot be cached by content; use a version"
            )
        _refuse_conflicts(path, number, requirement, runtime)
        normalized.append(_normal_form(requirement))
    return sorted(normalized)


def _normal_form(requirement: Requirement) -> str:
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    specifier = ",".join(sorted(str(spec) for spec in requirement.specifier))
    marker = f"; {requirement.marker}" if requirement.marker else ""
    return f"{canonicalize_name(requirement.name)}{extras}{specifier}{marker}"


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


def pip_install(command: list[str]) -> None:
    """Run pip on a model's requirements, with no credentials in its environment (builds run their code).

    Requirements pip cannot satisfy (a package that does not exist, a conflict with the runtime's
    constraints) are the model's error (RequirementsError, exit 1); anything else is the machine's."""
    try:
        run_tool(command, "pip install", untrusted=True)
    except ToolFailure as failure:
        if any(word in failure.output for word in UNSATISFIABLE) and not any(
            word in failure.output for word in NETWORK_TROUBLE
        ):
            raise RequirementsError(f"pip cannot install these requirements: {failure}") from None
        raise
