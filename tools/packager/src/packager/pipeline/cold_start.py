"""The cold-start check push (and `build --cold-start`) run on a built artifact: its cold start on an
emulated multi-model endpoint, with its first case that calls the top-level model, against packager.toml's
[endpoint] budget, over which it is refused (`over_budget = "refuse"`) or only reported ("warn")."""

from __future__ import annotations

from pathlib import Path

from packager.artifacts import Artifact
from packager.endpoint import ColdStartCheck, ColdStartFailed, measure_cold_start
from packager.loadtest import request_body
from packager.modeldir import Case, load_cases
from packager.pipeline.push import Check, CheckRefused
from packager.reporting import Report, silent
from packager.settings import ColdStartBudget
from packager.triton import LOAD_TIMEOUT, Launcher
from packager.validation import ModelReport


class ColdStartOverBudget(CheckRefused):
    """An artifact's cold start took longer than packager.toml's [endpoint] cold_start_budget."""


def cold_start_check(
    budget: ColdStartBudget,
    launcher: Launcher,
    log_dir: Path,
    *,
    public_key: Path | None = None,
    load_timeout: float = LOAD_TIMEOUT,
    refused: str = "it is refused",
    report: Report = silent,
) -> Check:
    """The check: the artifact's cold start on an emulated multi-model endpoint, with its first case that
    calls the top-level model (over gRPC streaming for a decoupled one), judged against `budget`
    (`judge_cold_start`); `refused` says what a refusal means, and `report` hears the measured line."""

    def check(artifact: Artifact, validated: ModelReport) -> dict[str, object]:
        top = str(artifact.manifest["top_model"])
        first = first_case(load_cases(validated.model.path, validated.triton_models, top), top)
        if first is None:
            return {"cold_start": None, "why": f"no case calls {top}, the model an endpoint serves"}
        request = request_body(first)
        log = log_dir / f"{validated.model.name}-cold-start.log"
        try:
            measured = measure_cold_start(
                artifact.path, request.body, content_type=request.sagemaker_content_type, launcher=launcher, log_path=log, budget=budget.seconds,
                public_key=public_key, load_timeout=load_timeout, stream=first.inputs if first.stream is not None else None,
            )  # fmt: skip
        except ColdStartFailed as failed:
            raise CheckRefused(str(failed), failed.found, failed.exit_code) from None
        found = judge_cold_start(measured, budget, archive=artifact.path.name, refused=refused)
        report(measured.line())
        return found

    return check


def first_case(cases: list[Case], top: str) -> Case | None:
    """The first case that calls `top`, the model an endpoint serves (None: no case does)."""
    return next((case for case in cases if case.model == top), None)


def judge_cold_start(
    measured: ColdStartCheck, budget: ColdStartBudget, *, archive: str, refused: str
) -> dict[str, object]:
    """What the check found, for the report's `checked`; ColdStartOverBudget (with it) when the cold start
    is over the budget and the budget refuses such an artifact, rather than only warning."""
    found: dict[str, object] = {"cold_start": measured.to_json(), "over_budget": measured.over}
    if measured.over and budget.over_budget == "refuse":
        raise ColdStartOverBudget(
            f"cold-start check: {archive} took {measured.seconds:.1f} s, over the {budget.seconds:g} s "
            f"budget ([endpoint] cold_start_budget in packager.toml), so {refused}: make it load faster, or "
            "raise the budget (an endpoint answers ModelNotReadyException past 60 s)",
            found,
        )
    return found
