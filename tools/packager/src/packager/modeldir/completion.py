"""Configs as Triton completes them: what asking a server for one gives back, and the shape of whatever asks.

Triton auto-completes a model's config when it loads it (`--disable-auto-complete-config` is off by
default): a python model's `auto_complete_config` sets inputs, outputs, max_batch_size or a transaction
policy, and other backends fill what their model file says. Reading that config needs a real server (model
code is never imported here); `packager.triton.completion` asks one, and caches its answer by content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from tritonclient.grpc import model_config_pb2

from packager.modeldir.diagnostics import Diagnostic
from packager.modeldir.discovery import ModelDir
from packager.modeldir.model_config import TritonModel


@dataclass(frozen=True)
class Completion:
    """What Triton made of one Triton model's config, or why it was not asked."""

    config: model_config_pb2.ModelConfig | None  # None: not completed (see `note` and `problem`)
    note: str  # who completed it ("Triton 2.51.0"), or why it was not asked
    cached: bool = False  # read back from the packager's cache: no server started for it
    seconds: float = 0.0  # what asking (or reading the cache) took
    problem: Diagnostic | None = None  # Triton refused to load the model


class Completer(Protocol):
    """Asks Triton for the completed config of each of `triton_models` (Triton models of `model` whose
    `completion_reason` is set), by name."""

    def __call__(self, model: ModelDir, triton_models: Mapping[str, TritonModel]) -> dict[str, Completion]:
        """The completion of each model, by name."""
