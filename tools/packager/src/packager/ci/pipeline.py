"""The pipeline `packager ci` runs for each model a push affects, one model at a time and each on its own:
pull its weights (DVC, its pointers only) → the quality gate (Black, mypy and its tests through Pants:
the tests replay its cases, so the weights come first, and the server and environment those replays use
are prepared first, outside the gate's sandbox, which sees the cache read-only) → the push pipeline
(environment, build, replay of the built artifact, publish by branch). A model that fails a step stops
there and publishes nothing; the others go on."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from packager.ci.gate import run_gate
from packager.environments import env_builder_for
from packager.errors import ExitCode, Outcome, PackagerError, worst
from packager.modeldir import ModelDir, check_weights, pull
from packager.pipeline import Base, PushPlan, PushResult, SelectionKind, push_model
from packager.preflight import NotServable
from packager.release import Revision
from packager.settings import Runtime
from packager.triton import launcher_for, prepare_to_serve

STEPS = ("weights", "gate", "build", "replay", "publish")


@dataclass(frozen=True)
class Step:
    """One step of one model: passed, failed (with what to do) or skipped (an earlier step failed)."""

    name: str
    outcome: Outcome
    seconds: float = 0.0
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "step": self.name,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


@dataclass
class ModelRun:
    """What `packager ci` did with one model."""

    model: str
    steps: list[Step] = field(default_factory=list)
    push: PushResult | None = None
    error_code: ExitCode = ExitCode.OK

    @property
    def ok(self) -> bool:
        return self.error_code == ExitCode.OK

    def step(self, name: str) -> Step:
        """The named step (skipped when the run stopped before it)."""
        return next((step for step in self.steps if step.name == name), Step(name, Outcome.SKIPPED))

    def fail(self, name: str, seconds: float, *, detail: str, code: ExitCode) -> ModelRun:
        self.steps.append(Step(name, Outcome.FAILED, seconds, detail))
        self.error_code = code
        return self

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "ok": self.ok,
            "steps": [self.step(name).to_json() for name in STEPS],
            "push": self.push.to_json() if self.push else None,
        }


@dataclass
class CiRun:
    """A whole `packager ci` run: the revision, what it was compared with, and each model's run."""

    revision: Revision
    selection: SelectionKind  # why these models
    considered: int  # models in the repository
    selected: list[str]  # the models to process
    base: Base | None = None  # what "affected" compared with
    runs: list[ModelRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(run.ok for run in self.runs)

    def exit_code(self) -> ExitCode:
        """The worst of the models' codes: a tool or service failure outranks a model's own failure."""
        return worst(run.error_code for run in self.runs)

    def to_json(self) -> dict[str, object]:
        return {
            "branch": self.revision.branch,
            "commit": self.revision.commit,
            "selection": self.selection,
            "base": self.base.commit if self.base else None,
            "base_reason": self.base.reason if self.base else None,
            "considered": self.considered,
            "selected": self.selected,
            "ok": self.ok,
            "models": [run.to_json() for run in self.runs],
        }


@dataclass(frozen=True)
class CiPlan:
    """What every model's run shares: the repository, how to run Pants, the DVC remote, the push, and the
    runtime the gate's tests replay on (see `Workspace.runtime`; None: nothing to prepare for them)."""

    root: Path
    pants: list[str]
    push: PushPlan
    remote: str | None = None
    gate_runtime: Runtime | None = None


def run_model(model: ModelDir, plan: CiPlan, position: str = "") -> ModelRun:
    """Weights, gate, then build → replay → publish; stop at the first failure."""
    run = ModelRun(model.name)
    started = time.monotonic()
    try:
        plan.push.report(f"{position}{model.name}: pulling its weights")
        pull([model], plan.remote)
        problems = check_weights(model)
        if problems:
            raise NotServable(problems)
    except PackagerError as error:
        return run.fail("weights", time.monotonic() - started, detail=str(error), code=error.exit_code)
    run.steps.append(Step("weights", Outcome.PASSED, time.monotonic() - started))
    log = plan.push.log_dir / f"{model.name}-gate.log"
    started = time.monotonic()
    try:
        _prepare_gate(model, plan)
    except PackagerError as error:
        return run.fail("gate", time.monotonic() - started, detail=str(error), code=error.exit_code)
    plan.push.report(f"{position}{model.name}: quality gate (Black, mypy and its tests, through Pants) ...")
    gate = run_gate(plan.root, model, pants=plan.pants, log=log)
    if not gate.passed:
        detail = f"`{shlex.join(gate.command)}` failed (log: {gate.log}):\n{gate.tail()}"
        return run.fail("gate", gate.seconds, detail=detail, code=ExitCode.MODEL_ERROR)
    run.steps.append(Step("gate", Outcome.PASSED, gate.seconds))
    plan.push.report(f"{position}{model.name}: gate passed in {gate.seconds:.0f} s")
    run.push = push_model(model, plan.push)
    run.steps.extend(_push_steps(run.push))
    run.error_code = run.push.error_code if not run.push.ok else ExitCode.OK
    return run


def _prepare_gate(model: ModelDir, plan: CiPlan) -> None:
    """What the gate's replays take from the cache, which they see read-only: the server of the runtime
    they replay on, the model's environment for it and the configs Triton completes (validated first, as
    every replay is)."""
    runtime = plan.gate_runtime
    if runtime is None or runtime.launcher != "local":
        return
    report = plan.push.report
    launcher = launcher_for(runtime, report)  # installs the server
    builder = env_builder_for(runtime, report)
    prepare_to_serve(model, runtime, builder=builder, launcher=launcher, report=report)


def _push_steps(result: PushResult) -> list[Step]:
    """Build, replay and publish, from what the push pipeline got to."""
    error, seconds = result.error or "", result.seconds
    if result.artifact is None:
        return [Step("build", Outcome.FAILED, seconds.get("build", 0.0), error)]
    built = Step(
        "build",
        Outcome.PASSED,
        seconds["build"],
        f"{result.artifact.path.name} ({result.artifact.sha256[:12]})",
    )
    if result.replay is None:  # refused before the replay: where it would go does not take it
        return [built, Step("publish", Outcome.FAILED, seconds.get("publish", 0.0), error)]
    cases = result.replay.results
    replayed = f"{sum(case.passed for case in cases)}/{len(cases)} cases passed"
    if not result.replay.passed:
        problems = [f"{case.case} [{case.protocol}]: {case.problems[0]}" for case in cases if not case.passed]
        detail = "\n".join([error, result.replay.error or "", *problems]).strip()
        return [built, Step("replay", Outcome.FAILED, seconds["replay"], f"{replayed}: {detail}")]
    replay = Step("replay", Outcome.PASSED, seconds["replay"], replayed)
    if result.published is None:
        return [built, replay, Step("publish", Outcome.FAILED, seconds.get("publish", 0.0), error)]
    where = f"{result.published.outcome}: {result.published.destination.uri}"
    return [built, replay, Step("publish", Outcome.PASSED, seconds.get("publish", 0.0), where)]


def run_ci(models: list[ModelDir], plan: CiPlan, run: CiRun) -> CiRun:
    """Every model of `models` through its pipeline, each on its own, into `run`."""
    for index, model in enumerate(models, 1):
        run.runs.append(run_model(model, plan, f"[{index}/{len(models)}] "))
    return run
