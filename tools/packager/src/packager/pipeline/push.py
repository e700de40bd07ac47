"""The composed pipeline behind `packager push`: validate -> env -> build -> replay the built artifact ->
(a check the caller gives, such as its cold start) -> publish, one model at a time. Only an artifact whose
replay (and check) passed in this run is ever published."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packager.artifacts import Artifact, build_artifact
from packager.environments import EnvBuilder
from packager.errors import ExitCode, PackagerError
from packager.modeldir import ModelDir, libraries_dir, model_libraries
from packager.release import Published, Revision, Route, check_publishable, history, publish_release
from packager.release.publishing import same_or_refuse
from packager.replay import ModelReplay, replay_artifact
from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.triton import LOAD_TIMEOUT, Launcher, prepare_to_serve
from packager.validation import ModelReport


class CheckRefused(PackagerError):
    """The plan's check refused an artifact; `found` is what it found, for the report's `checked`."""

    def __init__(
        self, message: str, found: dict[str, object], exit_code: ExitCode = ExitCode.MODEL_ERROR
    ) -> None:
        super().__init__(message)
        self.found = found
        self.exit_code = exit_code


# Run on a built artifact before it goes further: what it found goes in the report, and a PackagerError
# refuses the artifact (a CheckRefused with what it found).
Check = Callable[[Artifact, ModelReport], dict[str, object]]


@dataclass
class PushResult:
    """What happened to one model: its artifact, its replay, and where it was published (if it was)."""

    model: str
    artifact: Artifact | None = None
    replay: ModelReplay | None = None
    published: Published | None = None
    error: str | None = None
    error_code: ExitCode = ExitCode.OK
    seconds: dict[str, float] = field(default_factory=dict)  # "build", "replay", "check", "publish"
    checked: dict[str, object] | None = None  # what the plan's check before publishing found

    def timed(self, step: str, started: float) -> float:
        """Record the time since `started` against `step`; the clock now, to start the next one."""
        now = time.monotonic()
        self.seconds[step] = now - started
        return now

    @property
    def ok(self) -> bool:
        return self.error is None and self.published is not None

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "ok": self.ok,
            "version": self.artifact.version if self.artifact else None,
            "sha256": self.artifact.sha256 if self.artifact else None,
            "artifact": str(self.artifact.path) if self.artifact else None,
            "replay": self.replay.to_json() if self.replay else None,
            "uri": self.published.destination.uri if self.published else None,
            "production": self.published.destination.production if self.published else None,
            "outcome": self.published.outcome if self.published else None,
            "checked": self.checked,
            "error": self.error,
        }


@dataclass(frozen=True)
class PushPlan:
    """Everything one push run shares: the target runtime, the backends that build and serve for it,
    and where the branch publishes."""

    runtime: Runtime
    builder: EnvBuilder
    launcher: Launcher
    revision: Revision
    route: Route
    out_dir: Path
    log_dir: Path
    repository: Path | None = None  # the monorepo: sources outside it count as uncommitted
    signing_key: Path | None = None
    public_key: Path | None = None
    report: Report = silent  # hears what is slow: an environment built, a config completed, a replay
    load_timeout: float = LOAD_TIMEOUT  # the longest one Triton model's load may take in the replay
    check: Check | None = None  # run on an artifact whose replay passed, before it is published


def push_model(model: ModelDir, plan: PushPlan) -> PushResult:
    """Build, check it may go where the branch publishes, test the built bytes, then publish them (and
    record a production release, or repair a record an earlier run failed to write)."""
    result = PushResult(model.name)
    started = time.monotonic()
    try:
        validated, environment = prepare_to_serve(
            model,
            plan.runtime,
            builder=plan.builder,
            launcher=plan.launcher,
            report=plan.report,
            load_timeout=plan.load_timeout,
        )
        artifact = build_artifact(
            validated,
            plan.runtime,
            environment=environment,
            out_dir=plan.out_dir,
            signing_key=plan.signing_key,
            repository=plan.repository,
        )
        result.artifact = artifact
        started = result.timed("build", started)
        target = plan.route.destination(artifact)
        shared = [
            library.path
            for library in model_libraries(validated.triton_models.values(), libraries_dir(model.path))
        ]
        check_publishable(
            artifact,
            model.path,
            revision=plan.revision,
            production=target.production,
            public_key=plan.public_key,
            shared=shared,
        )
        existing = target.store.head(target.key)
        if existing is not None:  # refuse other bytes under a published key before replaying them
            same_or_refuse(existing, artifact, target)
        if target.production:  # and a release history it could not record in
            history(plan.route.store, model.name)
        plan.report(f"{model.name}: built {artifact.path.name} ({artifact.sha256[:12]}); replaying it")
        log = plan.log_dir / f"{model.name}-push.log"
        result.replay = replay_artifact(
            artifact.path, model, launcher=plan.launcher, log_path=log, load_timeout=plan.load_timeout
        )
        started = result.timed("replay", started)
        if not result.replay.passed:
            result.error = "its replay failed: nothing was published"
            result.error_code = result.replay.exit_code
            return result
        if plan.check is not None:
            try:
                result.checked = plan.check(artifact, validated)
            except CheckRefused as refused:
                result.checked = refused.found
                raise
            started = result.timed("check", started)
        result.published = publish_release(artifact, plan.route)
    except PackagerError as error:
        result.error, result.error_code = str(error), error.exit_code
    result.timed("build" if result.artifact is None else "publish", started)
    return result
