"""`packager serve --reload`: watch a served model directory (and the shared libraries its steps import)
and reload, in the running server, the Triton models whose files changed. A change the validator refuses
is never sent to Triton, and a model Triton refuses to load keeps its last good version serving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packager.environments import Environment
from packager.modeldir import (
    LOCK_FILE,
    REQUIREMENTS_FILE,
    TRITON_CONFIG,
    ModelDir,
    TritonModel,
    display_path,
    gpu_groups,
    libraries_dir,
    library_files,
)
from packager.scratch import scratch_dir
from packager.triton.launcher import ServerError
from packager.triton.serving import Served, load_all, on_cpu, stage_model, write_staged_config
from packager.validation import validate_model

IGNORED_PARTS = {"__pycache__", ".git"}
Snapshot = dict[Path, tuple[int, int]]


@dataclass
class Reload:
    """What one save led to: the Triton models reloaded, or why none was (the validator's located
    problems, or Triton's refusal; the last good version serves on)."""

    changed: list[str]
    reloaded: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    refused: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "changed": self.changed,
            "reloaded": self.reloaded,
            "problems": self.problems,
            "refused": self.refused,
            "seconds": round(self.seconds, 3),
        }


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not IGNORED_PARTS.intersection(path.relative_to(root).parts):
            yield path


class Watcher:
    """Polls a served model directory; `reload` brings the server up to date with what changed."""

    def __init__(self, model: ModelDir, served: Served, environment: Environment | None) -> None:
        self.model = model
        self.served = served
        self.environment = environment
        self.libs = libraries_dir(model.path)
        self.seen = self.snapshot()

    def snapshot(self) -> Snapshot:
        """(mtime in ns, size) of every file of the model directory and of libs/, by path."""
        roots = [self.model.path] + ([self.libs] if self.libs is not None else [])
        found: Snapshot = {}
        for root in roots:
            for path in _files(root):
                try:
                    status = path.stat()
                except FileNotFoundError:  # removed while we looked: the next poll sees it
                    continue
                found[path] = (status.st_mtime_ns, status.st_size)
        return found

    def changes(self) -> list[Path]:
        """The files added, removed or rewritten since the last call, once they stopped changing (an editor
        may write a file in several steps)."""
        current = self.snapshot()
        if current == self.seen:
            return []
        time.sleep(0.1)
        settled = self.snapshot()
        if settled != current:
            return []  # still being written: the next poll looks again
        changed = sorted(
            path for path in settled.keys() | self.seen.keys() if settled.get(path) != self.seen.get(path)
        )
        self.seen = settled
        return changed

    def reload(self, changed: list[Path]) -> Reload:
        """Validate the model again and reload the Triton models the changed files belong to."""
        started = time.monotonic()
        report = validate_model(self.model)
        names = sorted(self._owners(changed, report.triton_models))
        result = Reload(changed=[display_path(path) for path in changed])
        if any(path.name in (REQUIREMENTS_FILE, LOCK_FILE) for path in changed):
            result.problems.append(
                f"{self.model.path / REQUIREMENTS_FILE}: the requirements changed: stop and start "
                "`packager serve` again to build the new environment"
            )
        elif not report.ok:
            result.problems.extend(str(diagnostic) for diagnostic in report.diagnostics)
        elif set(report.triton_models) != set(self.served.triton_models):
            result.problems.append(
                f"{self.model.path}: its Triton models changed ({', '.join(sorted(report.triton_models))}): "
                "stop and start `packager serve` again"
            )
        elif names:
            try:
                self._restage_and_load(names, report.triton_models)
                result.reloaded = names
            except ServerError as error:
                result.refused = str(error)
        result.seconds = time.monotonic() - started
        return result

    def _owners(self, changed: list[Path], models: dict[str, TritonModel]) -> set[str]:
        """The Triton models a changed file belongs to: its own directory, or a shared library it imports."""
        owners = set()
        for name, triton in models.items():
            shared = {path for _, path in library_files(triton, self.libs)}
            if any(path.is_relative_to(triton.directory) or path in shared for path in changed):
                owners.add(name)
        return owners

    def _restage_and_load(self, names: list[str], models: dict[str, TritonModel]) -> None:
        """Stage each model's new files beside the served repository, swap them in, and load them."""
        repository = self.served.repository
        for name in names:
            with scratch_dir(f"restage-{name}", repository.parent) as fresh:
                stage_model(
                    fresh / name,
                    models[name],
                    libs=self.libs,
                    environment=self.environment,
                    env_mode=self.served.env_mode,
                )
                if self.served.gpu_as_cpu and gpu_groups(models[name].config):
                    write_staged_config(fresh / name / TRITON_CONFIG, on_cpu(models[name].config))
                (repository / name).rename(fresh / "retired")
                (fresh / name).rename(repository / name)
        load_all(self.served.server, {name: models[name] for name in names}, self.served.load_timeout)
