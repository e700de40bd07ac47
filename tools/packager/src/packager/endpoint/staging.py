"""Staging a verified artifact's Triton models into the emulator's server repository under names of their
own, so that two artifacts holding a model of one name (digits_1 and digits_2 both hold `preprocess`) can
be loaded side by side.

Only the staged copy is renamed: the artifact's bytes are verified against its manifest (and signature)
first, as they are unpacked; then each Triton model's directory moves into the server's repository as
`<prefix>--<name>`, and its config.pbtxt is rewritten there with `name` (and, in an ensemble, every
step's `model_name`) namespaced the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Mapping

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from packager.modeldir import TRITON_CONFIG, TritonModel, read_config

SEPARATOR = "--"


def namespace(target: str) -> str:
    """The prefix a target's models take in the server: its key made name-safe (and readable), and a digest
    of the key itself, so that two keys that read alike never share a prefix."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", target.removesuffix(".tar.gz")).strip("_")[-48:]
    return f"{readable}-{hashlib.sha256(target.encode()).hexdigest()[:8]}"


def staged_name(prefix: str, model: str) -> str:
    """The name the server knows a target's Triton model by."""
    return f"{prefix}{SEPARATOR}{model}"


def stage_models(models: Mapping[str, TritonModel], repository: Path, prefix: str) -> dict[str, TritonModel]:
    """Move each (verified, unpacked) Triton model into `repository` under its namespaced name, with its
    config renamed; the staged models by their server names."""
    staged = {}
    for name, model in models.items():
        destination = repository / staged_name(prefix, name)
        # A rename: the unpacked artifact and the repository share /tmp.
        shutil.move(model.directory, destination)
        config = model_config_pb2.ModelConfig()
        config.CopyFrom(model.config)
        config.name = destination.name
        for step in config.ensemble_scheduling.step:
            step.model_name = staged_name(prefix, step.model_name)
        path = destination / TRITON_CONFIG
        path.unlink()  # a new file: the unpacked one may be a hard link to another model's
        path.write_text(text_format.MessageToString(config))
        staged[destination.name] = TritonModel(destination, read_config(path))
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
