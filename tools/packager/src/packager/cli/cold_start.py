"""The cold-start check `push` (and `build --cold-start`) run on a built artifact: its cold start on an
emulated multi-model endpoint, against packager.toml's [endpoint] budget."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from packager.artifacts import Artifact
from packager.endpoint import ColdStartOverBudget, measure_cold_start
from packager.loadtest import request_body
from packager.modeldir import load_cases
from packager.triton import Launcher
from packager.validation import ModelReport
from packager.workspace import Workspace


def cold_start_check(
    workspace: Workspace,
    launcher: Launcher,
    public_key: Path | None,
    load_timeout: float,
    as_json: bool,
    refused: str,
) -> Callable[[Artifact, ModelReport], dict[str, object]]:
    """The artifact's cold start on an emulated multi-model endpoint, with its first case that calls the
    top-level model (over gRPC streaming for a decoupled one), against packager.toml's [endpoint] budget;
    `refused` says what a refusal means."""
    budget = workspace.config.cold_start

    def check(artifact: Artifact, report: ModelReport) -> dict[str, object]:
        top = str(artifact.manifest["top_model"])
        cases = load_cases(report.model.path, report.triton_models, top)
        first = next((case for case in cases if case.model == top), None)
        if first is None:
            return {"cold_start": None, "why": f"no case calls {top}, the model an endpoint serves"}
        request = request_body(first)
        log = workspace.log_dir() / f"{report.model.name}-cold-start.log"
        measured = measure_cold_start(
            artifact.path, request.body, request.sagemaker_content_type, launcher, log, budget.seconds,
            public_key, load_timeout, first.inputs if first.stream is not None else None,
        )  # fmt: skip
        found: dict[str, object] = {"cold_start": measured.to_json(), "over_budget": measured.over}
        if measured.over and budget.over_budget == "refuse":
            raise ColdStartOverBudget(
                f"cold-start check: {artifact.path.name} took {measured.seconds:.1f} s, over the "
                f"{budget.seconds:g} s budget ([endpoint] cold_start_budget in packager.toml), so {refused}: "
                "make it load faster, or raise the budget (an endpoint answers ModelNotReadyException past "
                "60 s)",
                found,
            )
        if not as_json:
            click.echo(measured.line(), err=True)
        return found

    return check
