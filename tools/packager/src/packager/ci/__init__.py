"""CI: the pipeline on every push, for the models the push affects only.

Owns the quality gate on a model's targets (`gate`), the per-model pipeline that composes the weights,
the gate and `packager.pipeline`'s push, for the models its selection chose (`pipeline`), and what a run
reports: a table, Markdown for a job summary, JUnit XML, and job matrices for GitHub Actions and GitLab
CI (`reports`).

Public: GateResult, run_gate, CiPlan, CiRun, ModelRun, Step, STEPS, run_model, run_ci, ci_table, markdown,
headline, failure_details, write_ci_junit, matrix, MATRIX_SYSTEMS.
"""

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
