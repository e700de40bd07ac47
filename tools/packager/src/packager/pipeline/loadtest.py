"""The pipeline behind `packager loadtest`: a model's cases as the request mix, sent at each concurrency
level to a running server or endpoint, or to a local Triton started for it (prepared as replay prepares
a model; over gRPC streaming when a case calls a decoupled model), and judged into a LoadReport."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from packager.environments import EnvBuilder
from packager.loadtest import (
    Level,
    LoadReport,
    Target,
    TritonGrpcStream,
    TritonHttp,
    request_body,
    run_levels,
)
from packager.modeldir import CASES_DIR, Case, CaseError, ModelDir, TritonModel, load_cases, top_model
from packager.preflight import NotServable
from packager.replay import NoCases
from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.triton import LOAD_TIMEOUT, Launcher, launched, prepare_to_serve
from packager.validation import validate_model


@dataclass(frozen=True)
class LoadPlan:
    """The levels, how long each is measured, and what the report judges them by."""

    concurrencies: tuple[int, ...]
    duration: float
    p99_ms: float
    headroom: float


@dataclass(frozen=True)
class Remote:
    """A server or endpoint that is already running, and the cases to send it (see `model_cases`)."""

    target: Target
    cases: list[Case]


@dataclass(frozen=True)
class LocalTriton:
    """A Triton the load test starts on this machine for the model, on `runtime`."""

    runtime: Runtime
    builder: EnvBuilder
    launcher: Launcher
    log_path: Path
    load_timeout: float = LOAD_TIMEOUT
    report: Report = silent  # hears what is slow: an environment built, a config completed


def load_test(
    model: ModelDir,
    where: Remote | LocalTriton,
    plan: LoadPlan,
    *,
    starting: Callable[[Target, int], None] | None = None,
    measured: Callable[[Level], None] | None = None,
) -> LoadReport:
    """Every level of `plan` against `where`; `starting` hears the target and the number of requests
    before the first level, `measured` each level as it ends."""
    with ExitStack() as stack:
        if isinstance(where, LocalTriton):
            target, cases = stack.enter_context(_local(model, where))
        else:
            target, cases = where.target, where.cases
        requests = [request_body(case) for case in cases]
        if starting is not None:
            starting(target, len(requests))
        levels = run_levels(
            target, requests, concurrencies=plan.concurrencies, duration=plan.duration, progress=measured
        )
    streamed = isinstance(target, TritonGrpcStream)
    return LoadReport(
        model.name, target.description, plan.duration, plan.p99_ms, plan.headroom, tuple(levels), streamed
    )


@contextmanager
def _local(model: ModelDir, local: LocalTriton) -> Iterator[tuple[Target, list[Case]]]:
    """The model prepared and served by a Triton of its own: its HTTP endpoint, or its gRPC streams when a
    case calls a decoupled model."""
    validated, environment = prepare_to_serve(
        model,
        local.runtime,
        builder=local.builder,
        launcher=local.launcher,
        report=local.report,
        load_timeout=local.load_timeout,
    )
    cases = model_cases(model, validated.triton_models)
    with launched(
        validated,
        environment,
        launcher=local.launcher,
        log_path=local.log_path,
        load_timeout=local.load_timeout,
    ) as served:
        endpoints = served.server.endpoints
        streamed = any(case.stream is not None for case in cases)
        yield (TritonGrpcStream(endpoints.grpc) if streamed else TritonHttp(endpoints.http)), cases


def model_cases(model: ModelDir, triton_models: Mapping[str, TritonModel] | None = None) -> list[Case]:
    """The model's cases, checked against its configs (validated here when no preflight ran)."""
    if triton_models is None:
        report = validate_model(model)
        if report.diagnostics:
            raise NotServable(report.diagnostics)
        triton_models = report.triton_models
    try:
        cases = load_cases(model.path, triton_models, top_model(triton_models))
    except CaseError as error:
        raise NotServable(error.diagnostics) from None
    if not cases:
        raise NoCases(f"{model.path / CASES_DIR}: no test cases (*.json) to send as the request mix")
    return cases
