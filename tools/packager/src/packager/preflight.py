"""The preflight step before anything runs or ships: validate a model directory, check its weights, and
build (or reuse) its environment. `env`, `serve`, `replay`, `build` and `push` all start here."""

from __future__ import annotations

from packager.environments import EnvBuilder, Environment, ensure_environment
from packager.errors import PackagerError
from packager.modeldir import Completer, Diagnostic, ModelDir, check_weights, env_path
from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.validation import ModelReport, validate_model


class NotServable(PackagerError):
    """The model directory has problems that must be fixed before it can run."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("\n".join(str(diagnostic) for diagnostic in diagnostics))
        self.diagnostics = diagnostics


def prepare(
    model: ModelDir,
    runtime: Runtime,
    builder: EnvBuilder,
    *,
    report: Report = silent,
    complete: Completer | None = None,
) -> tuple[ModelReport, Environment | None]:
    """Validate the model (against the configs Triton completes, where `complete` asks for them) and its
    weights, and build (or reuse) its environment with `builder` (saying so to `report`)."""
    validated = validate_model(model, complete)
    problems = validated.diagnostics or check_weights(model)
    if problems:
        raise NotServable(problems)
    uses_env = any(env_path(triton) is not None for triton in validated.triton_models.values())
    environment = ensure_environment(model, runtime, builder, report=report) if uses_env else None
    return validated, environment
