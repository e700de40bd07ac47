"""The push pipeline on fakes, in seconds: build (FakeEnvBuilder) -> replay the built artifact (fake
servers) -> the plan's check (here the cold-start check, through the emulator on the fake) -> publish to a
MemoryStore; and every refusal on the way publishes nothing. The same through the CLI, real Triton and S3
is in test_releases.py and test_mme.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from packager.artifacts import Artifact
from packager.endpoint import measure_cold_start
from packager.environments.fake import FakeEnvBuilder
from packager.errors import ExitCode
from packager.modeldir import ModelDir, load_cases
from packager.pipeline import CheckRefused, PushPlan, PushResult, push_model
from packager.release import Revision, current, route
from packager.release.stores import MemoryStore
from packager.settings import DEFAULT_RUNTIME
from packager.triton.fake import FakeLauncher, from_cases
from packager.validation import ModelReport, validate_model
from tests.conftest import git

Check = Callable[[Artifact, ModelReport], dict[str, object]]
BODY = json.dumps(
    {"inputs": [{"name": "FEATURES", "datatype": "FP32", "shape": [1, 4], "data": [5.0, 5.0, 5.0, 5.0]}]}
).encode()


@pytest.fixture
def fake(model_repo: Path) -> FakeLauncher:
    """A fake whose `fraud` answers each of its cases with what the case expects."""
    model = model_repo / "models" / "fraud"
    cases = load_cases(model, validate_model(ModelDir(model)).triton_models, "fraud")
    return FakeLauncher({"fraud": from_cases(cases)})


def _push(
    model_repo: Path,
    fake: FakeLauncher,
    store: MemoryStore,
    branch: str = "feature/fraud",
    check: Check | None = None,
) -> PushResult:
    """Push `fraud` from `branch` at HEAD (main publishes to production) into `store`."""
    commit = git(model_repo, "rev-parse", "HEAD")
    production = branch == "main"
    (model_repo / "dist" / "logs").mkdir(parents=True, exist_ok=True)
    plan = PushPlan(
        DEFAULT_RUNTIME,
        FakeEnvBuilder(),
        fake,
        Revision(branch, commit),
        route(branch, commit, store=store, production=production),
        model_repo / "dist",
        model_repo / "dist" / "logs",
        repository=model_repo,
        check=check,
    )
    return push_model(ModelDir(model_repo / "models" / "fraud"), plan)


def test_a_push_builds_replays_checks_the_cold_start_and_publishes(
    model_repo: Path, fake: FakeLauncher
) -> None:
    store = MemoryStore()
    commit = git(model_repo, "rev-parse", "HEAD")
    key = f"feature-fraud/{commit[:12]}/fraud_1.tar.gz"
    seen: list[object] = []

    def cold_start(artifact: Artifact, report: ModelReport) -> dict[str, object]:
        seen.append(store.head(key))
        log = model_repo / "dist" / "logs" / "cold-start.log"
        return measure_cold_start(
            artifact.path, BODY, content_type="application/json", launcher=fake, log_path=log, budget=60
        ).to_json()

    result = _push(model_repo, fake, store, check=cold_start)
    assert result.ok and result.error is None, result.error
    assert result.replay is not None and result.replay.passed and len(result.replay.results) == 4
    assert result.published is not None and result.published.outcome == "uploaded"
    assert result.published.destination.key == key and not result.published.destination.production
    stored = store.head(key)
    assert (
        result.artifact is not None
        and stored is not None
        and stored.metadata["sha256"] == result.artifact.sha256
    )
    assert seen == [None], "the check ran after the replay, before anything was published"
    assert result.checked is not None and result.checked["target"] == "fraud_1.tar.gz"
    assert result.checked["failed"] is None and result.checked["first_inference_status"] == 200
    assert set(result.seconds) == {"build", "replay", "check", "publish"}
    assert [server.alive() for server in fake.servers] == [False, False], "the replay's and the check's"


def test_production_publishes_and_records_the_release(model_repo: Path, fake: FakeLauncher) -> None:
    store = MemoryStore()
    result = _push(model_repo, fake, store, branch="main")
    assert result.ok and result.published is not None and result.published.destination.key == "fraud_1.tar.gz"
    released = current(store, "fraud")
    assert released is not None and (released.action, released.version) == ("publish", 1)
    assert _push(model_repo, fake, store, branch="main").published.outcome == "unchanged"  # type: ignore[union-attr]


def test_a_failing_replay_publishes_nothing(model_repo: Path) -> None:
    store, checked = MemoryStore(), []

    def check(artifact: Artifact, report: ModelReport) -> dict[str, object]:
        checked.append(artifact)
        return {}

    result = _push(model_repo, FakeLauncher(), store, check=check)  # it answers zeros
    assert (result.error, result.error_code) == (
        "its replay failed: nothing was published",
        ExitCode.MODEL_ERROR,
    )
    assert result.replay is not None and not result.replay.passed and result.replay.error is None
    assert list(store.keys()) == [] and checked == [], "neither checked nor published"


def test_a_load_the_server_refuses_publishes_nothing(model_repo: Path, fake: FakeLauncher) -> None:
    fake.refuse["preprocess"] = "Invalid argument: told to refuse it"
    store = MemoryStore()
    result = _push(model_repo, fake, store)
    assert result.replay is not None and result.replay.error is not None
    assert result.replay.error.startswith("Triton refused to load 'preprocess': Invalid argument: told to")
    assert (result.error, result.error_code) == (
        "its replay failed: nothing was published",
        ExitCode.MODEL_ERROR,
    )
    assert list(store.keys()) == []


def test_a_check_that_refuses_publishes_nothing_and_says_what_it_found(
    model_repo: Path, fake: FakeLauncher
) -> None:
    def over_budget(artifact: Artifact, report: ModelReport) -> dict[str, object]:
        raise CheckRefused("cold-start check: over the budget", {"over_budget": True})

    store = MemoryStore()
    result = _push(model_repo, fake, store, check=over_budget)
    assert (result.error, result.checked) == ("cold-start check: over the budget", {"over_budget": True})
    assert result.replay is not None and result.replay.passed and result.artifact is not None
    assert list(store.keys()) == [] and not result.ok


def test_other_bytes_under_the_key_are_refused_before_any_replay(
    model_repo: Path, fake: FakeLauncher
) -> None:
    store = MemoryStore()
    (model_repo / "other.tar.gz").write_bytes(b"other bytes")
    store.put_new("fraud_1.tar.gz", model_repo / "other.tar.gz", {"sha256": "f" * 64, "commit": "e" * 40})
    result = _push(model_repo, fake, store, branch="main")
    assert (
        result.error is not None
        and "memory://store/fraud_1.tar.gz is already published with other" in result.error
    )
    assert "bump models/fraud/model_version.txt (now 1)" in result.error
    assert result.replay is None and fake.servers == [], "no server started"
    assert list(store.keys()) == ["fraud_1.tar.gz"]


def test_production_takes_committed_sources_only(model_repo: Path, fake: FakeLauncher) -> None:
    step = model_repo / "models" / "fraud" / "postprocess" / "1" / "model.py"
    step.write_text(step.read_text() + "# not committed\n")
    store = MemoryStore()
    refused = _push(model_repo, fake, store, branch="main")
    assert refused.error is not None and "has uncommitted or untracked changes" in refused.error
    assert refused.error_code == ExitCode.MODEL_ERROR and fake.servers == [] and list(store.keys()) == []
    staged = _push(model_repo, fake, store)
    assert staged.ok and staged.published is not None and "-dirty-" in staged.published.destination.key
