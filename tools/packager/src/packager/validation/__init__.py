"""Offline validation of model directories: every problem Triton or packaging would hit, found up front.

Owns the rules (files and names in `layout`, one config at a time in `configs`, how steps fit together in
`ensembles`, what models calling others by name need loaded in `calls`) and the report they add up to. Nothing here starts a server.

Public: ModelReport, validate_model, validate_models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from packager.modeldir import TRITON_CONFIG, ConfigUnreadable, Diagnostic, ModelDir, TritonModel, read_config
from packager.validation.calls import check_calls
from packager.validation.configs import check_config
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
    """What validation learned of one model directory: its version, Triton models and problems."""

    model: ModelDir
    version: int | None
    triton_models: dict[str, TritonModel] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diagnostics

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.model.name,
            "path": str(self.model.path),
            "version": self.version,
            "triton_models": sorted(self.triton_models),
            "ok": self.ok,
            "diagnostics": [diagnostic.to_json() for diagnostic in self.diagnostics],
        }


def validate_model(model: ModelDir) -> ModelReport:
    """Run every rule on one model directory; never raises for a problem in the directory."""
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
    checks: Iterable[Diagnostic] = (
        *check_names(model),
        *check_triton_model_dirs(model),
        *(diagnostic for triton in report.triton_models.values() for diagnostic in check_config(triton)),
        *check_ensembles(report.triton_models, unreadable),
        *(check_top_level_ensemble(model.path, report.triton_models) if not unreadable else ()),
        *(check_calls(report.triton_models) if not unreadable else ()),
        *check_symlinks(model),
        *check_dvc_pointers(model),
        *check_requirements_lock(model, report.triton_models, all_read=not unreadable),
        *(check_cases(model, report.triton_models) if report.triton_models and not unreadable else ()),
    )
    report.diagnostics.extend(checks)
    report.diagnostics.sort(key=_order)
    return report


def _order(diagnostic: Diagnostic) -> tuple[str, int, int, str]:
    return (str(diagnostic.path), diagnostic.line or 0, diagnostic.column or 0, diagnostic.message)


def validate_models(models: Iterable[ModelDir]) -> list[ModelReport]:
    """Validate each model directory."""
    return [validate_model(model) for model in models]
