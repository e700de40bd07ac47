"""Staging a verified artifact's Triton models into a server's model repository, under the names the
artifact gives them (see `servers` for why they are never renamed), and what they hold on disk."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

from packager.modeldir import TritonModel


def stage_models(models: Mapping[str, TritonModel], repository: Path) -> dict[str, TritonModel]:
    """Move each (verified, unpacked) Triton model into `repository` under its own name; the staged models.
    None of the names may be in the repository already (the server pool holds them for this target)."""
    staged = {}
    for name, model in models.items():
        destination = repository / name
        # A rename: the unpacked artifact and the repository share the temporary directory.
        shutil.move(model.directory, destination)
        staged[name] = TritonModel(destination, model.parsed)
    return staged


def staged_bytes(directories: list[Path]) -> int:
    """The bytes a target's staged models hold: every regular file, a file hard-linked into several models
    counted once per model (Triton unpacks each step's environment, and loads each model's files, apart)."""
    total = 0
    for directory in directories:
        seen: set[tuple[int, int]] = set()
        for root, _, files in os.walk(directory):
            for name in files:
                info = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_size
    return total
