"""Replay on fake servers, in seconds: a model directory's cases over HTTP and gRPC that pass, that fail
saying what differed, a load bounded by its timeout, a model that raises, and the errors that stop a replay
with their exit codes; and a built artifact replayed as it is (`replay_model`, `replay_artifact`). The same
through real Triton and the CLI is in test_replay_real.py."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from packager.environments.fake import FakeEnvBuilder
from packager.errors import ExitCode
from packager.modeldir import ModelDir, load_cases
from packager.replay import ModelReplay, replay_artifact, replay_model
from packager.settings import DEFAULT_RUNTIME
from packager.triton.fake import FakeLauncher, from_cases
from packager.validation import validate_model
from tests.fast.conftest import built


@pytest.fixture
def model(model_repo: Path) -> ModelDir:
    """`fraud`, from `packager new`: an ensemble of two python steps, and two cases."""
    return ModelDir(model_repo / "models" / "fraud")


def _answering(model: ModelDir) -> FakeLauncher:
    """A fake whose `fraud` answers each case with what the case expects."""
    report = validate_model(model)
    return FakeLauncher({"fraud": from_cases(load_cases(model.path, report.triton_models, "fraud"))})


def _replayed(model: ModelDir, fake: FakeLauncher, tmp_path: Path, load_timeout: float = 60.0) -> ModelReplay:
    log = tmp_path / "triton.log"
    return replay_model(
        model,
        DEFAULT_RUNTIME,
        builder=FakeEnvBuilder(),
        launcher=fake,
        log_path=log,
        load_timeout=load_timeout,
    )


def test_cases_that_pass_over_http_and_grpc(model: ModelDir, tmp_path: Path) -> None:
    fake = _answering(model)
    replay = _replayed(model, fake, tmp_path)
    assert replay.passed and replay.error is None
    assert [(result.case, result.protocol, result.status) for result in replay.results] == [
        ("batch_of_two", "http", "ok"),
        ("batch_of_two", "grpc", "ok"),
        ("midrange", "http", "ok"),
        ("midrange", "grpc", "ok"),
    ]
    (server,) = fake.servers
    assert sorted(name for name, _ in server.loads) == ["fraud", "postprocess", "preprocess"]
    assert not server.alive(), "the server is stopped once the cases ran"


def test_a_wrong_answer_fails_saying_what_differed(model: ModelDir, tmp_path: Path) -> None:
    def off(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        return {"SCORE": np.full((inputs["FEATURES"].shape[0], 1), 0.25, np.float32)}

    replay = _replayed(model, FakeLauncher({"fraud": off}), tmp_path)
    assert not replay.passed and replay.error is None and replay.error_code == ExitCode.OK
    problems = {result.case: result.problems for result in replay.results if result.protocol == "grpc"}
    assert problems == {
        "batch_of_two": (
            "SCORE: 2 of 2 values differ: [0, 0] expected 0.5 ±1e-06, got 0.25; [1, 0] expected 1.0 ±1e-06, got 0.25",
        ),
        "midrange": ("SCORE: 1 of 1 values differ: [0, 0] expected 0.5 ±1e-06, got 0.25",),
    }
    assert all(result.status == "FAIL" for result in replay.results)


def test_a_model_that_raises_fails_each_request(model: ModelDir, tmp_path: Path) -> None:
    def raises(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        raise RuntimeError("the model's code raised")

    replay = _replayed(model, FakeLauncher({"fraud": raises}), tmp_path)
    assert not replay.passed and len(replay.results) == 4
    for result in replay.results:
        (problem,) = result.problems
        assert problem.startswith("request failed: ") and "RuntimeError: the model's code raised" in problem


def test_a_hung_load_is_bounded_by_the_load_timeout(model: ModelDir, tmp_path: Path) -> None:
    fake = _answering(model)
    fake.hang.add("preprocess")
    replay = _replayed(model, fake, tmp_path, load_timeout=0.2)
    assert replay.error is not None and replay.error.startswith(
        "loading 'preprocess' did not finish within 0.2 s (a hung load, or a slower one: raise --load-timeout)"
    )
    assert (replay.error_code, replay.results) == (ExitCode.MODEL_ERROR, [])


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("refuse", "Triton refused to load 'postprocess': Invalid argument: told to refuse it"),
        ("crash", "Triton stopped answering while loading 'postprocess'"),
    ],
)
def test_a_load_the_server_refuses_or_dies_in_stops_the_replay(
    model: ModelDir, tmp_path: Path, fault: str, error: str
) -> None:
    fake = _answering(model)
    if fault == "refuse":
        fake.refuse["postprocess"] = "Invalid argument: told to refuse it"
    else:
        fake.crash.add("postprocess")
    replay = _replayed(model, fake, tmp_path)
    assert replay.error is not None and replay.error.startswith(error), replay.error
    assert (replay.error_code, replay.results, replay.passed) == (ExitCode.MODEL_ERROR, [], False)


def test_a_model_without_cases_or_with_a_case_that_does_not_fit_stops_before_a_server(
    model: ModelDir, tmp_path: Path
) -> None:
    fake = _answering(model)
    case = model.path / "tests" / "cases" / "midrange.json"
    case.write_text(case.read_text().replace('"FEATURES"', '"FEATURE"'))
    unfit = _replayed(model, fake, tmp_path)
    assert unfit.error is not None and "midrange.json" in unfit.error and "FEATURE" in unfit.error
    for path in (model.path / "tests" / "cases").iterdir():
        path.unlink()
    none = _replayed(model, fake, tmp_path)
    assert none.error is not None and none.error.endswith(
        "no test cases (*.json); a model ships only with cases that pass"
    )
    assert (unfit.error_code, none.error_code) == (ExitCode.MODEL_ERROR, ExitCode.MODEL_ERROR)
    assert fake.servers == [], "no server started"


def test_a_built_artifact_replays_as_it_is(model: ModelDir, tmp_path: Path) -> None:
    artifact = built(model.path, tmp_path / "dist")
    fake = _answering(model)
    replay = replay_artifact(artifact.path, model, launcher=fake, log_path=tmp_path / "triton.log")
    assert replay.passed and len(replay.results) == 4
    (server,) = fake.servers
    assert server.repository.name.startswith(
        "packager-artifact-"
    ), "it served the verified, unpacked artifact"
    assert not server.repository.exists(), "which is removed after"
