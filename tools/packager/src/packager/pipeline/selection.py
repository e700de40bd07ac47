"""Which models a run takes: those named, every model (`--all`), or those a push affects since the commit
it is compared with (`affected`: the Pants graph's answer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packager.modeldir import ModelDir
from packager.pipeline.affected import Base, affected_models, base_for
from packager.release import Revision

SelectionKind = Literal["named", "--all", "affected"]  # why these models: as reports say it


@dataclass(frozen=True)
class Selection:
    """The models chosen, why, out of how many in the repository, and (affected) what they were compared
    with."""

    kind: SelectionKind
    models: list[ModelDir]
    considered: int
    base: Base | None = None

    @property
    def names(self) -> list[str]:
        return [model.name for model in self.models]


def select_models(
    root: Path,
    known: list[ModelDir],
    named: list[ModelDir],
    *,
    every: bool,
    revision: Revision,
    production_branches: tuple[str, ...],
    since: str | None,
    pants: list[str],
) -> Selection:
    """`named` when there are any; else every model of `known` when `every`; else the models of `known`
    affected since the base `base_for` chooses (`since`, else by branch and CI system)."""
    if named:
        return Selection("named", named, len(known))
    if every:
        return Selection("--all", known, len(known))
    base = base_for(root, revision, production_branches=production_branches, since=since)
    return Selection("affected", affected_models(root, known, base=base, pants=pants), len(known), base)
