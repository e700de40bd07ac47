"""The pipeline behind `packager replay`: each model directory's cases replayed through a Triton of its
own (validate, weights, env, serve, send, compare), or one model's cases against exactly what a built
artifact holds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packager.environments import EnvBuilder
from packager.modeldir import ModelDir
from packager.replay import PROTOCOLS, ModelReplay, replay_artifact, replay_model
from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.triton import LOAD_TIMEOUT, Launcher


@dataclass(frozen=True)
class ReplayPlan:
    """What every replay shares: the runtime and its backends, where server logs go, how environments are
    served (`env_mode`, model directories only), the protocols, and how long a model may take to load."""

    runtime: Runtime
    builder: EnvBuilder
    launcher: Launcher
    log_dir: Path
    env_mode: str = "unpacked"
    protocols: tuple[str, ...] = PROTOCOLS
    load_timeout: float = LOAD_TIMEOUT
    report: Report = silent  # hears which model starts, and what is slow (an environment built, ...)


def replay_models(models: Iterable[ModelDir], plan: ReplayPlan) -> list[ModelReplay]:
    """Replay each model directory on its own; the plan's report hears which one starts."""
    replays = []
    for model in models:
        plan.report(f"replaying {model.name} on runtime {plan.runtime.name} ...")
        replays.append(
            replay_model(
                model,
                plan.runtime,
                builder=plan.builder,
                launcher=plan.launcher,
                log_path=plan.log_dir / f"{model.name}-replay.log",
                env_mode=plan.env_mode,
                protocols=plan.protocols,
                report=plan.report,
                load_timeout=plan.load_timeout,
            )
        )
    return replays


def replay_built(
    artifact: Path,
    model: ModelDir,
    plan: ReplayPlan,
    *,
    public_key: Path | None = None,
) -> ModelReplay:
    """Replay `model`'s cases against what `artifact` holds, once it verified (its signature too, with
    `public_key`); the plan's report hears that it starts."""
    plan.report(f"replaying {artifact} with the cases of {model.name} ...")
    log = plan.log_dir / f"{model.name}-artifact.log"
    return replay_artifact(
        artifact,
        model,
        launcher=plan.launcher,
        log_path=log,
        protocols=plan.protocols,
        public_key=public_key,
        load_timeout=plan.load_timeout,
    )
