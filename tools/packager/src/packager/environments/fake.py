"""An env builder for tests, with no pip, uv, interpreter or network: what a lock pins becomes installed
distributions' metadata, so that the env cache, the runtime's constraints and the packing see an
environment; and `fake_lock`, a lock as `packager lock` heads it, written without uv.

What it does not do: install any code (nothing in its environments imports or runs) or give them an
interpreter; it resolves nothing (a lock's pins are taken as they are, hashes unchecked). It is in no
registry: tests use it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from packager.environments.lock import lock_header
from packager.environments.requirements import read_requirements
from packager.modeldir import REQUIREMENTS_FILE, RequirementsError
from packager.settings import Runtime

ACTIVATE = "# A fake environment (packager.environments.fake): nothing to activate.\n"


def pins(lock: str) -> dict[str, str]:
    """The name and version of each `name==version` a lock pins (hashes and comments skipped)."""
    pinned = {}
    for line in lock.splitlines():
        if not line.strip() or line[0].isspace() or line.startswith("#"):
            continue
        try:
            requirement = Requirement(line.rstrip("\\ "))
        except InvalidRequirement as error:
            raise RequirementsError(f"not a pin ({error})") from None
        versions = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if len(versions) != 1:
            raise RequirementsError(f"{line.strip()} pins no single version")
        pinned[requirement.name] = versions[0]
    return pinned


class FakeEnvBuilder:
    """Builds `lib/pythonX.Y/site-packages/<name>-<version>.dist-info/METADATA` for each pin of the lock and
    a `bin/activate` that does nothing; the same lock gives the same bytes. `portable`: what its
    environments claim (True, as a conda one, unless a test needs a venv's refusals)."""

    name = "fake"

    def __init__(self, portable: bool = True) -> None:
        self.portable = portable

    def fingerprint(self, python: str) -> dict[str, str]:
        return {"fake": "1", "portable": str(self.portable)}

    def build(self, lock: Path, python: str, destination: Path) -> None:
        site = destination / "lib" / f"python{python}" / "site-packages"
        site.mkdir(parents=True)
        for name, version in sorted(pins(lock.read_text()).items()):
            info = site / f"{name.replace('-', '_')}-{version}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (destination / "bin").mkdir()
        (destination / "bin" / "activate").write_text(ACTIVATE)


def fake_lock(model: Path, runtime: Runtime, pinned: Mapping[str, str]) -> str:
    """A lock of the model directory's requirements.txt for `runtime`, as `packager lock` heads it (so that
    it is current), pinning `pinned` (name -> version) without hashes; uv is never run."""
    header = lock_header(read_requirements(model / REQUIREMENTS_FILE, runtime), runtime)
    return header.line() + "\n" + "".join(f"{name}=={version}\n" for name, version in sorted(pinned.items()))
