"""The pipeline behind `packager build`: validate -> env -> build, one model after another, each artifact
then checked when the plan gives a check (`build --cold-start`: its cold start), which may refuse it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packager.artifacts import Artifact, build_artifact
from packager.environments import EnvBuilder
from packager.errors import ExitCode
from packager.modeldir import ModelDir
from packager.pipeline.push import Check, CheckRefused
from packager.preflight import prepare
from packager.reporting import Report, silent
from packager.settings import Runtime


@dataclass(frozen=True)
class BuildPlan:
    """What every model's build shares: the target runtime, the env builder for it, where the archives go,
    the key that signs their manifests, the check each artifact gets (None: none), and who hears progress."""

    runtime: Runtime
    builder: EnvBuilder
    out_dir: Path
    signing_key: Path | None = None
    check: Check | None = None
    report: Report = silent  # hears what is slow: an environment built


@dataclass(frozen=True)
class Built:
    """One model's artifact, how long it took to build, what the plan's check found (None: no check) and,
    when the check refused it, why."""

    model: str
    artifact: Artifact
    seconds: float
    checked: dict[str, object] | None = None
    error: str | None = None
    error_code: ExitCode = ExitCode.OK

    @property
    def size(self) -> int:
        return self.artifact.path.stat().st_size

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {
            "model": self.model,
            "version": self.artifact.version,
            "path": str(self.artifact.path),
            "bytes": self.size,
            "sha256": self.artifact.sha256,
        }
        if self.checked is not None:
            record["checked"] = self.checked
        if self.error is not None:
            record["error"] = self.error
        return record


def build_models(models: Iterable[ModelDir], plan: BuildPlan) -> list[Built]:
    """Build each model's artifact (a model that cannot be built stops the run: nothing after it is built),
    then run the plan's check on it; a refusal is that model's result, and the others go on."""
    return [_build(model, plan) for model in models]


def _build(model: ModelDir, plan: BuildPlan) -> Built:
    started = time.monotonic()
    validated, environment = prepare(model, plan.runtime, plan.builder, report=plan.report)
    artifact = build_artifact(
        validated, plan.runtime, environment=environment, out_dir=plan.out_dir, signing_key=plan.signing_key
    )
    seconds = time.monotonic() - started
    if plan.check is None:
        return Built(model.name, artifact, seconds)
    try:
        return Built(model.name, artifact, seconds, plan.check(artifact, validated))
    except CheckRefused as refused:
        return Built(model.name, artifact, seconds, refused.found, str(refused), refused.exit_code)
