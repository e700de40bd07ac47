"""A model directory's Python requirements: `requirements.txt` (what a data scientist edits) and
`requirements.lock` beside it (every package pinned with its hashes, written by `packager lock`).

The lock's first line records what it was made from: the digest of the normalized requirements and what
of the runtime decides the resolution (its Python, platform and constraints: runtimes that agree on them
share a lock), so that a lock that no longer matches is found offline.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from packager.errors import PackagerError
from packager.modeldir.diagnostics import Diagnostic

REQUIREMENTS_FILE = "requirements.txt"
LOCK_FILE = "requirements.lock"
LOCK_HEADER = "# packager lock: "
_HEADER_FIELD = re.compile(r"(\w+)=(\S+)")


class RequirementsError(PackagerError):
    """requirements.txt (or its lock) cannot be built for the target runtime."""


@dataclass(frozen=True)
class RequirementLine:
    """One line of requirements.txt that says something: a requirement, or a pip option."""

    number: int
    text: str  # normalized: the same for equivalent spellings
    requirement: Requirement | None  # None for an option line (--index-url ...)


def parse_requirements(path: Path) -> list[RequirementLine]:
    """Every requirement and option of a requirements file; RequirementsError at the line of a bad one."""
    if not path.is_file():
        raise RequirementsError(f"{path}: missing; list the packages the model's python steps import")
    lines = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("-"):
            if line.startswith(("-e", "--editable", "-r", "--requirement", "-c", "--constraint")):
                raise RequirementsError(
                    f"{path}:{number}: {line.split()[0]} is not supported; list every package in this file"
                )
            lines.append(RequirementLine(number, " ".join(line.split()), None))
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise RequirementsError(f"{path}:{number}: not a requirement ({error})") from None
        if requirement.url:
            raise RequirementsError(
                f"{path}:{number}: URL requirements cannot be locked by content; use a version"
            )
        lines.append(RequirementLine(number, _normal_form(requirement), requirement))
    return lines


def _normal_form(requirement: Requirement) -> str:
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    specifier = ",".join(sorted(str(spec) for spec in requirement.specifier))
    marker = f"; {requirement.marker}" if requirement.marker else ""
    return f"{canonicalize_name(requirement.name)}{extras}{specifier}{marker}"


def digest(texts: list[str]) -> str:
    """A digest of lines, whatever their order."""
    return hashlib.sha256("\n".join(sorted(texts)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LockHeader:
    """What a lock was made from."""

    requirements: str  # digest of the normalized requirements
    python: str
    platform: str
    constraints: str  # digest of the runtime's constraints

    def line(self) -> str:
        fields = " ".join(f"{name}={getattr(self, name)}" for name in self.__dataclass_fields__)
        return f"{LOCK_HEADER}{fields}"


def read_lock_header(lock: Path) -> LockHeader | None:
    """The header of a lock written by `packager lock`, or None when its first line is not one."""
    first = lock.read_text(encoding="utf-8").partition("\n")[0]
    if not first.startswith(LOCK_HEADER):
        return None
    fields = dict(_HEADER_FIELD.findall(first))
    try:
        return LockHeader(**{name: fields[name] for name in LockHeader.__dataclass_fields__})
    except KeyError:
        return None


def lock_problems(model_path: Path) -> list[Diagnostic]:
    """What is wrong with a model's lock, offline: missing, not written by `packager lock`, or made from
    other requirements than requirements.txt holds now."""
    requirements, lock = model_path / REQUIREMENTS_FILE, model_path / LOCK_FILE
    relock = f"run `packager lock {model_path.name}` and commit both files"
    if not requirements.is_file():
        return [
            Diagnostic(
                requirements,
                None,
                None,
                "missing: a step loads an environment; list its packages here",
                "lock",
            )
        ]
    if not lock.is_file():
        return [Diagnostic(requirements, None, None, f"has no {LOCK_FILE} beside it: {relock}", "lock")]
    try:
        header = read_lock_header(lock)
    except UnicodeDecodeError as error:
        return [Diagnostic(lock, None, None, f"is not UTF-8 text (byte {error.start}): {relock}", "lock")]
    try:
        current = digest([line.text for line in parse_requirements(requirements)])
    except UnicodeDecodeError as error:
        message = f"is not UTF-8 text (byte {error.start}); save it as UTF-8"
        return [Diagnostic(requirements, None, None, message, "lock")]
    except RequirementsError as error:
        return [_at_line(requirements, str(error))]
    if header is None:
        return [
            Diagnostic(
                lock,
                1,
                1,
                f"not written by `packager lock` (no `{LOCK_HEADER.strip()}` line): {relock}",
                "lock",
            )
        ]
    if header.requirements != current:
        return [
            Diagnostic(
                lock, 1, 1, f"stale: {REQUIREMENTS_FILE} changed since it was locked; {relock}", "lock"
            )
        ]
    return []


def _at_line(path: Path, message: str) -> Diagnostic:
    """A RequirementsError's `path:line: why` (or `path: why`) as a diagnostic at that line of `path`."""
    found = re.match(rf"{re.escape(str(path))}(?::([0-9]+))?: (.*)", message, re.DOTALL)
    if found is None:
        return Diagnostic(path, None, None, message, "lock")
    line = int(found.group(1)) if found.group(1) else None
    return Diagnostic(path, line, 1 if line else None, found.group(2), "lock")
