"""CI: the pipeline on every push, for the models the push affects only.

Owns which models a push affects and what it is compared with (`affected`: the Pants graph's changed
targets and their dependents), the quality gate on a model's targets (`gate`), the per-model pipeline
that composes the weights, the gate and the push stage (`pipeline`), and what a run reports: a table,
Markdown for a job summary, JUnit XML, and job matrices for GitHub Actions and GitLab CI (`reports`).

Public: Base, base_for, affected_models, pants_command, pants_environment, PANTS_COMMAND_VARIABLE,
GateResult, run_gate, CiPlan, CiRun, ModelRun, Step, STEPS, run_model, run_ci, ci_table, markdown, headline,
failure_details, write_ci_junit, matrix, MATRIX_SYSTEMS.
"""

from packager.ci.affected import (
    PANTS_COMMAND_VARIABLE,
    Base,
    affected_models,
    base_for,
    pants_command,
    pants_environment,
)
from packager.ci.gate import GateResult, run_gate
from packager.ci.pipeline import STEPS, CiPlan, CiRun, ModelRun, Step, run_ci, run_model
from packager.ci.reports import (
    MATRIX_SYSTEMS,
    ci_table,
    failure_details,
    headline,
    markdown,
    matrix,
    write_ci_junit,
)

__all__ = [
    "PANTS_COMMAND_VARIABLE",
    "Base",
    "affected_models",
    "base_for",
    "pants_command",
    "pants_environment",
    "GateResult",
    "run_gate",
    "STEPS",
    "CiPlan",
    "CiRun",
    "ModelRun",
    "Step",
    "run_ci",
    "run_model",
    "MATRIX_SYSTEMS",
    "ci_table",
    "failure_details",
    "headline",
    "markdown",
    "matrix",
    "write_ci_junit",
]
