"""Validation of model directories: every problem Triton or packaging would hit, found up front.

Owns the rules (files and names in `layout`, one config at a time in `configs`, how steps fit together in
`ensembles`, what models calling others by name need loaded in `calls`) and the report they add up to. Nothing here starts a server: where Triton completes a model's
config at load time (`TritonModel.completion_reason`), the caller's `Completer` asks one, and the ensemble
and case rules judge against what it answers (without one, they skip what calls such a model, and the
report says so).

Public: ModelReport, validate_model, validate_models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from packager.modeldir import (
    TRITON_CONFIG,
    Completer,
    Completion,
    ConfigUnreadable,
    Diagnostic,
    ModelDir,
    TritonModel,
    display_path,
    read_config,
)
from packager.validation.calls import check_calls
from packager.validation.configs import check_config, check_devices
from packager.validation.ensembles import check_ensembles, check_top_level_ensemble
from packager.validation.layout import (
    check_cases,
    check_dvc_pointers,
    check_names,
    check_requirements_lock,
    check_symlinks,
    check_triton_model_dirs,
    read_model_version,
)

__all__ = ["ModelReport", "validate_model", "validate_models"]


@dataclass
class ModelReport:
    """What validation learned of one model directory: its version, Triton models (with the configs Triton
    completed), problems, warnings (which do not fail it) and how each completion went."""

    model: ModelDir
    version: int | None
    triton_models: dict[str, TritonModel] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    completions: dict[str, Completion] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.diagnostics

    def notes(self) -> list[str]:
        """One line per Triton model whose config Triton completes: what it completed, or why not."""
        return [
            _completion_note(self.triton_models[name], completion)
            for name, completion in sorted(self.completions.items())
        ]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.model.name,
            "path": str(self.model.path),
            "version": self.version,
            "triton_models": sorted(self.triton_models),
            "ok": self.ok,
            "diagnostics": [diagnostic.to_json() for diagnostic in self.diagnostics],
            "warnings": [diagnostic.to_json() for diagnostic in self.warnings],
            "completed": {
                name: _completion_json(self.triton_models[name], completion)
                for name, completion in sorted(self.completions.items())
            },
        }


def _completion_note(model: TritonModel, completion: Completion) -> str:
    """`path: ...` saying which config Triton completed and what it holds, or why it was not asked."""
    where = display_path(model.parsed.path)
    if completion.config is None:
        return (
            f"{where}: not completed ({model.completion_reason}): {completion.note}; the cases and ensemble "
            f"steps that call {model.name} were not checked against its inputs and outputs"
        )
    config = completion.config
    inputs = ", ".join(tensor.name for tensor in config.input) or "none"
    outputs = ", ".join(tensor.name for tensor in config.output) or "none"
    how = "cached" if completion.cached else f"asked now, {completion.seconds:.2f} s"
    return (
        f"{where}: checked against the config {completion.note} completes ({model.completion_reason}; "
        f"{how}): max_batch_size {config.max_batch_size}, inputs {inputs}, outputs {outputs}"
    )


def _completion_json(model: TritonModel, completion: Completion) -> dict[str, object]:
    config = completion.config
    return {
        "reason": model.completion_reason,
        "completed": config is not None,
        "note": completion.note,
        "cached": completion.cached,
        "seconds": round(completion.seconds, 3),
        "max_batch_size": config.max_batch_size if config is not None else None,
        "inputs": [tensor.name for tensor in config.input] if config is not None else None,
        "outputs": [tensor.name for tensor in config.output] if config is not None else None,
    }


def validate_model(model: ModelDir, complete: Completer | None = None) -> ModelReport:
    """Run every rule on one model directory; never raises for a problem in the directory. `complete` asks
    Triton for the configs it completes (only for the Triton models that need it, once the rest passed)."""
    version, diagnostics = read_model_version(model)
    report = ModelReport(model, version, diagnostics=diagnostics)
    unreadable: set[str] = set()
    for directory in model.triton_model_dirs():
        try:
            parsed = read_config(directory / TRITON_CONFIG)
        except ConfigUnreadable as error:
            report.diagnostics.append(error.diagnostic)
            unreadable.add(directory.name)
            continue
        report.triton_models[directory.name] = TritonModel(directory, parsed)
    report.diagnostics.extend(
        (
            *check_names(model),
            *check_triton_model_dirs(model),
            *(diagnostic for triton in report.triton_models.values() for diagnostic in check_config(triton)),
            *check_symlinks(model),
            *check_dvc_pointers(model),
            *check_requirements_lock(model, report.triton_models, all_read=not unreadable),
        )
    )
    report.warnings.extend(d for triton in report.triton_models.values() for d in check_devices(triton))
    _complete(report, complete)
    report.diagnostics.extend(
        (
            *check_ensembles(report.triton_models, unreadable),
            *(check_top_level_ensemble(model.path, report.triton_models) if not unreadable else ()),
            *(check_calls(report.triton_models) if not unreadable else ()),
            *(check_cases(model, report.triton_models) if report.triton_models and not unreadable else ()),
        )
    )
    report.diagnostics.sort(key=_order)
    report.warnings.sort(key=_order)
    return report


def _complete(report: ModelReport, complete: Completer | None) -> None:
    """Ask `complete` for the configs Triton completes, once the directory has no other problem, and put
    them in the report's Triton models (a refused load becomes a problem)."""
    needed = {name: triton for name, triton in report.triton_models.items() if triton.completion_reason}
    if not needed:
        return
    if report.diagnostics or complete is None:
        why = "fix the problems above first" if report.diagnostics else "validation was not given a Triton"
        report.completions = {name: Completion(None, why) for name in needed}
        return
    report.completions = complete(report.model, needed)
    for name, completion in report.completions.items():
        if completion.config is not None:
            report.triton_models[name] = dataclasses.replace(needed[name], completed=completion.config)
        if completion.problem is not None:
            report.diagnostics.append(completion.problem)


def _order(diagnostic: Diagnostic) -> tuple[str, int, int, str]:
    return (str(diagnostic.path), diagnostic.line or 0, diagnostic.column or 0, diagnostic.message)


def validate_models(models: Iterable[ModelDir], complete: Completer | None = None) -> list[ModelReport]:
    """Validate each model directory."""
    return [validate_model(model, complete) for model in models]
