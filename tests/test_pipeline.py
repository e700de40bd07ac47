"""The pipeline stage's functions on their own, in seconds: which exit code several results end with, a
replay's and a build's outcome, the cold-start policy (refuse or warn over the budget) on cold starts made
up here, a load test's levels against a stand-in server, and an adopted model locked before it is
validated; then a model directory and its artifact replayed through one real Triton each. The same paths
through the CLI are in test_mme_bls.py, test_cli.py and test_adopt.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from packager.endpoint import ColdStart, ColdStartCheck
from packager.environments import env_builder_for
from packager.errors import ExitCode, worst
from packager.loadtest import RequestBody, request_body
from packager.modeldir import ModelDir, load_cases
from packager.pipeline import (
    BuildPlan,
    CheckRefused,
    ColdStartOverBudget,
    LoadPlan,
    Remote,
    ReplayPlan,
    adopt_model,
    build_models,
    first_case,
    judge_cold_start,
    load_test,
    model_cases,
    replay_built,
    replay_models,
)
from packager.replay import CaseResult, ModelReplay, NoCases
from packager.settings import DEFAULT_RUNTIME, ColdStartBudget
from packager.triton import launcher_for
from packager.validation import validate_model
from tests.conftest import new_model
from tests.test_adopt import add_sub

OVER = (
    "cold-start check: fraud_1.tar.gz took 45.0 s, over the 30 s budget ([endpoint] cold_start_budget in "
    "packager.toml), so nothing was published: make it load faster, or raise the budget (an endpoint "
    "answers ModelNotReadyException past 60 s)"
)


@pytest.mark.parametrize(
    "codes, expected",
    [
        ([], ExitCode.OK),
        ([ExitCode.OK, ExitCode.OK], ExitCode.OK),
        ([ExitCode.OK, ExitCode.MODEL_ERROR], ExitCode.MODEL_ERROR),
        ([ExitCode.MODEL_ERROR, ExitCode.USAGE_ERROR], ExitCode.USAGE_ERROR),
        (
            [ExitCode.ENVIRONMENT_ERROR, ExitCode.USAGE_ERROR, ExitCode.MODEL_ERROR],
            ExitCode.ENVIRONMENT_ERROR,
        ),
        ([ExitCode.INTERNAL_ERROR, ExitCode.ENVIRONMENT_ERROR], ExitCode.INTERNAL_ERROR),
    ],
)
def test_the_worst_code_wins_whatever_the_order(codes: list[ExitCode], expected: ExitCode) -> None:
    """A bug outranks a tool failure, which outranks a usage error, which outranks a model's failure."""
    assert worst(codes) == expected and worst(reversed(codes)) == expected
    assert worst(iter(codes)) == expected, "any iterable, consumed once"


def test_a_replays_exit_code_is_its_errors_or_a_model_error_for_a_failed_case() -> None:
    passed = CaseResult("m", "a", "http", True, 0.1)
    failed = CaseResult("m", "b", "grpc", False, 0.1, ("differs",))
    not_sent = CaseResult("m", "c", "http", False, 0.0, not_sent="HTTP cannot carry it")
    assert ModelReplay("m", [passed, not_sent]).exit_code == ExitCode.OK
    assert ModelReplay("m", [passed, failed]).exit_code == ExitCode.MODEL_ERROR
    stopped = ModelReplay("m", error="Triton did not start", error_code=ExitCode.ENVIRONMENT_ERROR)
    assert stopped.exit_code == ExitCode.ENVIRONMENT_ERROR and not stopped.passed


def _measured(seconds: float, budget: float = 30.0) -> ColdStartCheck:
    """A cold start as the emulator records one, made up: `seconds` of loading."""
    cold = ColdStart("fraud_1.tar.gz", model="fraud", bytes=1000, load_s=seconds, first_inference_s=0.0)
    return ColdStartCheck(cold, budget)


def test_a_cold_start_within_the_budget_passes_with_what_it_found() -> None:
    found = judge_cold_start(
        _measured(12.0), ColdStartBudget(30.0, "refuse"), archive="fraud_1.tar.gz", refused="refused"
    )
    assert found["over_budget"] is False
    cold = found["cold_start"]
    assert isinstance(cold, dict) and (cold["seconds"], cold["budget"], cold["load_s"]) == (12.0, 30.0, 12.0)


def test_a_cold_start_over_the_budget_is_refused_with_what_it_found() -> None:
    with pytest.raises(ColdStartOverBudget) as raised:
        judge_cold_start(
            _measured(45.0),
            ColdStartBudget(30.0, "refuse"),
            archive="fraud_1.tar.gz",
            refused="nothing was published",
        )
    assert str(raised.value) == OVER
    assert isinstance(raised.value, CheckRefused) and raised.value.exit_code == ExitCode.MODEL_ERROR
    assert raised.value.found["over_budget"] is True


def test_a_budget_that_warns_lets_a_slow_cold_start_pass_and_says_it_was_over() -> None:
    found = judge_cold_start(
        _measured(45.0), ColdStartBudget(30.0, "warn"), archive="fraud_1.tar.gz", refused="refused"
    )
    assert found["over_budget"] is True and found == {
        "cold_start": _measured(45.0).to_json(),
        "over_budget": True,
    }


def test_the_cold_start_sends_the_first_case_that_calls_the_top_model(
    tmp_path: Path, scaffold_lock: str
) -> None:
    model = ModelDir(new_model(tmp_path, "fraud", scaffold_lock))
    report = validate_model(model)
    cases = load_cases(model.path, report.triton_models, "fraud")
    step = next(name for name in report.triton_models if name != "fraud")
    aside = dataclasses.replace(cases[0], id=f"{step}-only", model=step)
    chosen = first_case([aside, *cases], "fraud")
    assert chosen is not None and chosen.id == cases[0].id and chosen.model == "fraud"
    assert first_case([aside], "fraud") is None, "no case calls the model an endpoint serves"


def test_a_build_refused_by_its_check_is_that_models_result_and_the_others_go_on(
    tmp_path: Path, scaffold_lock: str
) -> None:
    models = [ModelDir(new_model(tmp_path / "models", name, scaffold_lock)) for name in ("alpha", "beta")]
    checked: list[str] = []

    def check(artifact: object, report: object) -> dict[str, object]:
        name = models[len(checked)].name
        checked.append(name)
        if name == "alpha":
            raise CheckRefused("alpha's store did not answer", {"seen": 1}, ExitCode.ENVIRONMENT_ERROR)
        return {"seen": 2}

    plan = BuildPlan(DEFAULT_RUNTIME, env_builder_for(DEFAULT_RUNTIME), tmp_path / "dist", check=check)
    alpha, beta = build_models(models, plan)
    assert checked == ["alpha", "beta"]
    assert (alpha.checked, alpha.error, alpha.error_code) == (
        {"seen": 1},
        "alpha's store did not answer",
        ExitCode.ENVIRONMENT_ERROR,
    )
    assert (beta.checked, beta.error, beta.error_code) == ({"seen": 2}, None, ExitCode.OK)
    assert beta.artifact.path == tmp_path / "dist" / "beta_1.tar.gz" and beta.artifact.path.is_file()
    assert list(alpha.to_json()) == ["model", "version", "path", "bytes", "sha256", "checked", "error"]
    assert list(beta.to_json()) == ["model", "version", "path", "bytes", "sha256", "checked"]
    assert beta.to_json()["bytes"] == beta.artifact.path.stat().st_size
    assert worst(built.error_code for built in (alpha, beta)) == ExitCode.ENVIRONMENT_ERROR
    unchecked = build_models(models[1:], BuildPlan(DEFAULT_RUNTIME, plan.builder, tmp_path / "dist"))
    assert list(unchecked[0].to_json()) == ["model", "version", "path", "bytes", "sha256"]


class _Answering:
    """A stand-in server: every connection answers every request at once, and records its body."""

    description = "a stand-in that answers at once"

    def __init__(self) -> None:
        self.bodies: set[bytes] = set()

    def connect(self) -> _Answering:
        return self

    def send(self, request: RequestBody) -> float | None:
        self.bodies.add(request.body)
        return None

    def close(self) -> None:
        pass


def test_a_load_test_sends_the_models_cases_at_each_level_and_reports_them(
    tmp_path: Path, scaffold_lock: str
) -> None:
    model = ModelDir(new_model(tmp_path, "fraud", scaffold_lock))
    cases = model_cases(model)
    target = _Answering()
    heard: list[tuple[str, int]] = []
    levels: list[int] = []
    report = load_test(
        model,
        Remote(target, cases),
        LoadPlan((1, 2), 0.2, 100.0, 0.5),
        starting=lambda where, requests: heard.append((where.description, requests)),
        measured=lambda level: levels.append(level.concurrency),
    )
    assert heard == [("a stand-in that answers at once", len(cases))] and levels == [1, 2]
    assert target.bodies == {request_body(case).body for case in cases}, "every case is in the mix"
    assert (report.model, report.target, report.streamed) == ("fraud", target.description, False)
    assert [level.concurrency for level in report.levels] == [1, 2]
    assert all(level.errors == 0 for level in report.levels)
    (model.path / "tests" / "cases" / "midrange.json").unlink()
    (model.path / "tests" / "cases" / "batch_of_two.json").unlink()
    with pytest.raises(NoCases, match="no test cases"):
        model_cases(model)


def test_an_adopted_model_is_locked_before_it_is_validated(tmp_path: Path) -> None:
    """Laid out alone it lacks requirements.lock (test_adopt.py); adopted through the pipeline it validates."""
    adopted = adopt_model(
        add_sub(tmp_path / "upstream"),
        tmp_path / "models",
        runtime=DEFAULT_RUNTIME,
        builder=env_builder_for(DEFAULT_RUNTIME),
    )
    root = tmp_path / "models" / "add_sub"
    assert adopted.adoption.path == root and adopted.report.ok, adopted.report.diagnostics
    assert adopted.locked is not None and adopted.locked.path == root / "requirements.lock"
    assert adopted.locked.path.is_file() and adopted.locked.packages > 0
    assert adopted.adoption.case_template == root / "tests" / "cases" / "example.json"


def test_a_model_directory_and_its_artifact_replay_through_a_real_triton(
    tmp_path: Path, scaffold_lock: str
) -> None:
    model = ModelDir(new_model(tmp_path / "models", "fraud", scaffold_lock))
    builder = env_builder_for(DEFAULT_RUNTIME)
    launcher = launcher_for(DEFAULT_RUNTIME)
    (tmp_path / "logs").mkdir()
    heard: list[str] = []
    plan = ReplayPlan(
        DEFAULT_RUNTIME, builder, launcher, tmp_path / "logs", protocols=("http",), report=heard.append
    )
    (replayed,) = replay_models([model], plan)
    assert replayed.passed and replayed.exit_code == ExitCode.OK, replayed.to_json()
    assert {result.protocol for result in replayed.results} == {"http"}
    (built,) = build_models([model], BuildPlan(DEFAULT_RUNTIME, builder, tmp_path / "dist"))
    from_artifact = replay_built(built.artifact.path, model, plan)
    assert from_artifact.passed and len(from_artifact.results) == len(replayed.results)
    assert [line for line in heard if line.startswith("replaying ")] == [  # an environment built is said too
        f"replaying fraud on runtime {DEFAULT_RUNTIME.name} ...",
        f"replaying {built.artifact.path} with the cases of fraud ...",
    ]
    assert (tmp_path / "logs" / "fraud-replay.log").is_file()
    assert (tmp_path / "logs" / "fraud-artifact.log").is_file()
