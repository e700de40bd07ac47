"""An artifact's cold start as a multi-model endpoint pays it: fetched from a store, verified, extracted,
loaded and asked its first request, through the emulator (a store of its own, holding only this artifact,
and a fresh server), against the budget packager.toml sets."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packager.endpoint.emulator import ColdStart, Settings, emulating
from packager.errors import PackagerError
from packager.release.stores import open_store
from packager.triton import LOAD_TIMEOUT, Launcher


class ColdStartOverBudget(PackagerError):
    """An artifact's cold start took longer than packager.toml's [endpoint] cold_start_budget."""


@dataclass(frozen=True)
class ColdStartCheck:
    """A measured cold start and what the budget made of it."""

    cold_start: ColdStart
    seconds: float  # the whole cold start: download to first inference
    budget: float
    over: bool

    def line(self) -> str:
        verdict = (
            f"over the {self.budget:g} s budget" if self.over else f"within the {self.budget:g} s budget"
        )
        return f"{self.cold_start.line()}; {self.seconds:.2f} s in all, {verdict}"

    def to_json(self) -> dict[str, object]:
        return {**self.cold_start.to_json(), "seconds": round(self.seconds, 3), "budget": self.budget}


def measure_cold_start(
    archive: Path,
    body: bytes,
    content_type: str,
    launcher: Launcher,
    log_path: Path,
    budget: float,
    public_key: Path | None = None,
    load_timeout: float = LOAD_TIMEOUT,
) -> ColdStartCheck:
    """Serve `archive` from a store of its own through the emulator, send it `body` (its first case), and
    time each step of that first request against `budget` seconds."""
    with tempfile.TemporaryDirectory(prefix="packager-cold-start-") as scratch:
        try:
            os.link(archive, Path(scratch) / archive.name)
        except OSError:
            shutil.copyfile(archive, Path(scratch) / archive.name)
        store = open_store(f"file:{scratch}", None)
        settings = Settings(public_key=public_key, not_ready_after=load_timeout, load_timeout=load_timeout)
        try:
            with emulating(store, launcher, log_path, settings) as emulator:
                emulator.invoke(archive.name, body, content_type)
                (cold,) = emulator.cold_starts
        finally:
            store.close()
    steps = (cold.download_s, cold.verify_extract_s, cold.stage_s, cold.evict_s, cold.load_s)
    seconds = sum(steps) + (cold.first_inference_s or 0.0)
    return ColdStartCheck(cold, seconds, budget, seconds > budget)
