"""What an artifact is: `<model>_<version>.tar.gz` with `packager-manifest.json` (and its signature)
first, and the digest that is its identity."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.errors import PackagerError

MANIFEST = "packager-manifest.json"
SIGNATURE = "packager-manifest.sig"
# Bump when the manifest's shape changes.
MANIFEST_FORMAT = 3


class ArtifactError(PackagerError):
    """An artifact is not what its manifest says, or cannot be read safely."""


@dataclass(frozen=True)
class Artifact:
    """A built archive and what its manifest says."""

    path: Path
    sha256: str
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["model"])

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def content_digest(self) -> str:
        return str(self.manifest["content_digest"])


def artifact_name(model: str, version: int) -> str:
    return f"{model}_{version}.tar.gz"


def content_digest(files: dict[str, dict[str, Any]]) -> str:
    """One digest over every file's path and sha256: equal for equal contents, whatever built them."""
    canonical = json.dumps({path: entry["sha256"] for path, entry in sorted(files.items())}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parents(relative: str) -> list[str]:
    """The directories a file of an artifact lies in: `a/b/c.py` -> [`a`, `a/b`]."""
    parts = relative.split("/")[:-1]
    return ["/".join(parts[: end + 1]) for end in range(len(parts))]
