"""The pipeline behind `packager adopt`: lay out an existing Triton model as a model directory, lock its
requirements for the runtime, validate it (with the configs Triton completes), and write a case template
for its top model from the config Triton completed where the layout could not write one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from packager.environments import EnvBuilder, Locked, lock_model
from packager.modeldir import Adoption, ModelDir, adopt, write_case_template
from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.triton import TritonCompleter
from packager.validation import ModelReport, validate_models


@dataclass(frozen=True)
class Adopted:
    """What adopting laid out, the lock it wrote (None: no requirements), and its validation."""

    adoption: Adoption
    locked: Locked | None
    report: ModelReport


def adopt_model(
    source: Path,
    parent: Path,
    *,
    runtime: Runtime,
    builder: EnvBuilder,
    name: str | None = None,
    top: str | None = None,
    report: Report = silent,
) -> Adopted:
    """Adopt `source` as `parent/<name>` (see `packager.modeldir.adopt`), lock and validate it for `runtime`."""
    adoption = adopt(source, parent, name=name, top=top)
    model = ModelDir(adoption.path)
    locked = lock_model(model, runtime) if adoption.requirements else None
    complete = TritonCompleter.for_runtime(runtime, builder, build_envs=False, report=report)
    (validated,) = validate_models([model], complete)
    served = validated.triton_models.get(adoption.top_model)
    if adoption.case_template is None and served is not None and served.completed is not None:
        template = write_case_template(model.path, served)  # from the config Triton completed
        adoption = dataclasses.replace(adoption, case_template=template)
        (validated,) = validate_models([model], complete)  # with the template (the completion is cached)
    return Adopted(adoption, locked, validated)
