"""Pipeline: the stages composed into what a command does to a set of models, so that a command only
parses its options, builds a plan, calls one of these and renders what it returns.

Owns which models a run takes (`selection`: named, `--all`, or those a push affects, from the Pants graph
and the commit it is compared with, in `affected`), building them (`build`: validate, env, build, and a
check on each artifact), replaying model directories or a built artifact (`replays`), the push pipeline
(`push`: build, replay the built artifact, a check, publish by branch), the cold-start check push and
`build --cold-start` run on an artifact, against packager.toml's budget, which refuses an artifact over
it or only warns (`cold_start`), a load test against a running server or a local Triton it starts
(`loadtest`), and adopting an existing Triton model: laid out, locked, validated, given a case template
from the config Triton completes (`adoption`).

Public: select_models, Selection, SelectionKind, Base, base_for, affected_models, pants_command,
pants_environment, PANTS_COMMAND_VARIABLE, build_models, BuildPlan, Built, replay_models, replay_built,
ReplayPlan, push_model, PushPlan, PushResult, Check, CheckRefused, cold_start_check, judge_cold_start,
first_case, ColdStartOverBudget, load_test, LoadPlan, Remote, LocalTriton, model_cases, adopt_model,
Adopted.
"""

from packager.pipeline.adoption import Adopted, adopt_model
from packager.pipeline.affected import (
    PANTS_COMMAND_VARIABLE,
    Base,
    affected_models,
    base_for,
    pants_command,
    pants_environment,
)
from packager.pipeline.build import BuildPlan, Built, build_models
from packager.pipeline.cold_start import ColdStartOverBudget, cold_start_check, first_case, judge_cold_start
from packager.pipeline.loadtest import LoadPlan, LocalTriton, Remote, load_test, model_cases
from packager.pipeline.push import Check, CheckRefused, PushPlan, PushResult, push_model
from packager.pipeline.replays import ReplayPlan, replay_built, replay_models
from packager.pipeline.selection import Selection, SelectionKind, select_models

__all__ = [
    "Adopted",
    "adopt_model",
    "PANTS_COMMAND_VARIABLE",
    "Base",
    "affected_models",
    "base_for",
    "pants_command",
    "pants_environment",
    "BuildPlan",
    "Built",
    "build_models",
    "ColdStartOverBudget",
    "cold_start_check",
    "first_case",
    "judge_cold_start",
    "LoadPlan",
    "LocalTriton",
    "Remote",
    "load_test",
    "model_cases",
    "Check",
    "CheckRefused",
    "PushPlan",
    "PushResult",
    "push_model",
    "ReplayPlan",
    "replay_built",
    "replay_models",
    "Selection",
    "SelectionKind",
    "select_models",
]
