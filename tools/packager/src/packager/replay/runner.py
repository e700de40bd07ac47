"""Replaying a model's test cases against a running Triton, over every protocol, and recording results.

`replay_model` serves a model directory (preflight first); `replay_artifact` serves exactly what a built
artifact holds. Either way the launcher and env builder are given, so any backend can run them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.utils import InferenceServerException

from packager.artifacts import triton_models_in, verified
from packager.environments import EnvBuilder
from packager.errors import ExitCode, PackagerError
from packager.modeldir import CASES_DIR, Case, CaseError, ModelDir, TritonModel, load_cases, top_model
from packager.replay.clients import PROTOCOLS, SENDERS, STREAMS, NotSent, Sender, StreamFailed
from packager.replay.compare import compare, compare_stream
from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.triton import (
    LOAD_TIMEOUT,
    Launcher,
    Server,
    completed_from,
    launched,
    loaded,
    prepare_to_serve,
    shm_hint,
)


@dataclass(frozen=True)
class CaseResult:
    """One case sent over one protocol: passed, or what differed; or not sent, and why (`not_sent`: the
    protocol cannot carry it). `via` is how the protocol carried a decoupled model's case ("" otherwise:
    one request, one response)."""

    model: str
    case: str
    protocol: str
    passed: bool
    seconds: float
    problems: tuple[str, ...] = ()
    via: str = ""
    not_sent: str | None = None

    @property
    def status(self) -> str:
        return "n/a" if self.not_sent is not None else "ok" if self.passed else "FAIL"

    @property
    def failed(self) -> bool:
        return not self.passed and self.not_sent is None

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "case": self.case,
            "protocol": self.protocol,
            "via": self.via or None,
            "passed": self.passed,
            "not_sent": self.not_sent,
            "seconds": round(self.seconds, 4),
            "problems": list(self.problems),
        }


@dataclass
class ModelReplay:
    """Every result for one model directory, or the error that stopped it before any case ran."""

    model: str
    results: list[CaseResult] = field(default_factory=list)
    error: str | None = None
    error_code: ExitCode = ExitCode.OK

    @property
    def passed(self) -> bool:
        return self.error is None and not any(result.failed for result in self.results)

    @property
    def exit_code(self) -> ExitCode:
        """OK when it passed; the error's code when one stopped it; else a model error (a case failed)."""
        if self.error is not None:
            return self.error_code
        return ExitCode.OK if self.passed else ExitCode.MODEL_ERROR

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "passed": self.passed,
            "error": self.error,
            "results": [result.to_json() for result in self.results],
        }


def replay_cases(
    model: str, server: Server, *, cases: list[Case], protocols: tuple[str, ...] = PROTOCOLS
) -> list[CaseResult]:
    """Send every case over every protocol to `server`: the protocols side by side, each one request at a
    time; results in case order, then protocol order."""

    def over(protocol: str) -> list[CaseResult]:
        send = SENDERS[protocol](server)
        try:
            return [_run(model, case, protocol, send) for case in cases]
        finally:
            send.close()

    with ThreadPoolExecutor(max_workers=max(1, len(protocols))) as pool:
        by_protocol = list(pool.map(over, protocols))
    return [results[index] for index in range(len(cases)) for results in by_protocol]


def _run(model: str, case: Case, protocol: str, send: Sender) -> CaseResult:
    via = STREAMS[protocol] if case.stream is not None else ""
    started = time.perf_counter()
    try:
        responses = send(case)
    except NotSent as why:
        return CaseResult(model, case.id, protocol, False, 0.0, via=via, not_sent=str(why))
    except (InferenceServerException, StreamFailed) as error:
        message = error.message() if isinstance(error, InferenceServerException) else str(error)
        reason = shm_hint(f"request failed: {message}")
        return CaseResult(model, case.id, protocol, False, time.perf_counter() - started, (reason,), via)
    except Exception as error:  # a dropped connection or a crashed server, in whichever client's words
        reason = shm_hint(f"request failed: {type(error).__name__}: {error}")
        return CaseResult(model, case.id, protocol, False, time.perf_counter() - started, (reason,), via)
    seconds = time.perf_counter() - started
    if case.stream is not None:
        problems = tuple(compare_stream(case.stream, responses))
    else:
        (outputs,) = responses
        problems = tuple(
            problem for expected in case.outputs for problem in compare(expected, outputs.get(expected.name))
        )
    return CaseResult(model, case.id, protocol, not problems, seconds, problems, via)


def replay_model(
    model: ModelDir,
    runtime: Runtime,
    *,
    builder: EnvBuilder,
    launcher: Launcher,
    log_path: Path,
    env_mode: str = "unpacked",
    protocols: tuple[str, ...] = PROTOCOLS,
    report: Report = silent,
    load_timeout: float = LOAD_TIMEOUT,
) -> ModelReplay:
    """Validate, build the environment, start Triton, load (each Triton model within `load_timeout`
    seconds), and replay every case of one model directory."""
    replay = ModelReplay(model.name)
    with _recorded(replay):
        validated, environment = prepare_to_serve(
            model, runtime, builder=builder, launcher=launcher, report=report, load_timeout=load_timeout
        )
        cases = _cases(model, validated.triton_models, top_model(validated.triton_models))
        with launched(
            validated,
            environment,
            launcher=launcher,
            log_path=log_path,
            env_mode=env_mode,
            load_timeout=load_timeout,
        ) as served:
            replay.results = replay_cases(model.name, served.server, cases=cases, protocols=protocols)
    return replay


def replay_artifact(
    archive: Path,
    model: ModelDir,
    *,
    launcher: Launcher,
    log_path: Path,
    protocols: tuple[str, ...] = PROTOCOLS,
    public_key: Path | None = None,
    load_timeout: float = LOAD_TIMEOUT,
) -> ModelReplay:
    """Replay a model directory's cases against exactly what an artifact holds, once it verified against
    its manifest (and signature, with a public key); the environments are the packed tarballs inside it,
    as an endpoint receives them. Each Triton model loads within `load_timeout` seconds."""
    replay = ModelReplay(model.name)
    with _recorded(replay):
        with verified(archive, public_key) as (artifact, repository):
            triton_models = triton_models_in(repository)
            top = str(artifact.manifest["top_model"])
            _cases(model, triton_models, top)  # no server started for cases that do not load
            portable = artifact.manifest.get("env_portable")
            with loaded(
                repository,
                triton_models,
                launcher=launcher,
                log_path=log_path,
                env_portable=portable,
                load_timeout=load_timeout,
            ) as server:
                cases = _cases(model, completed_from(server, triton_models), top)
                replay.results = replay_cases(model.name, server, cases=cases, protocols=protocols)
    return replay


def _cases(model: ModelDir, triton_models: dict[str, TritonModel], top: str) -> list[Case]:
    cases = load_cases(model.path, triton_models, top)
    if not cases:
        raise NoCases(
            f"{model.path / CASES_DIR}: no test cases (*.json); a model ships only with cases that pass"
        )
    return cases


@contextmanager
def _recorded(replay: ModelReplay) -> Iterator[None]:
    """An expected failure becomes the replay's error (with its exit code) instead of propagating."""
    try:
        yield
    except CaseError as error:
        replay.error, replay.error_code = str(error), ExitCode.MODEL_ERROR
    except PackagerError as error:
        replay.error, replay.error_code = str(error), error.exit_code


class NoCases(PackagerError):
    """A model directory without test cases cannot be replayed."""
