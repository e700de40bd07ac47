"""The emulator's own logic on fake servers, in seconds: least-recently-used targets unloaded under the
memory limit (never one serving a request), ModelNotReadyException past the load deadline and then the
answer, concurrent first requests loading a target once, and a failed load leaving nothing behind. The
same emulator through boto3 and real Triton is in test_mme.py."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.endpoint import Emulator, ModelError, ModelNotReady, TargetInvalid, emulating, fronted
from packager.release.stores import MemoryStore
from packager.release.stores.file import FileStore
from packager.triton.fake import FakeLauncher, FakeServer
from tests.conftest import new_model, runtime_client
from tests.fast.conftest import built

TARGETS = ("a/fraud_1.tar.gz", "b/fraud_1.tar.gz", "c/fraud_1.tar.gz")
BODY = json.dumps(
    {"inputs": [{"name": "FEATURES", "datatype": "FP32", "shape": [1, 4], "data": [5.0, 5.0, 5.0, 5.0]}]}
).encode()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, scaffold_lock: str) -> MemoryStore:
    """One artifact of a scaffolded model (`fraud`: an ensemble of two python steps) under each of TARGETS."""
    root = tmp_path_factory.mktemp("emulated")
    artifact = built(new_model(root / "models", "fraud", scaffold_lock), root / "dist")
    store = MemoryStore()
    for key in TARGETS:
        store.put_new(key, artifact.path, {"sha256": artifact.sha256})
    return store


@pytest.fixture
def fake() -> FakeLauncher:
    return FakeLauncher()


@pytest.fixture
def emulator(store: MemoryStore, fake: FakeLauncher, tmp_path: Path) -> Iterator[Emulator]:
    with emulating(store, fake, log_path=tmp_path / "mme.log") as running:
        yield running
        slots = list(running.servers.slots)
    assert not [slot for slot in slots if slot.repository.exists()], "the repositories are removed"
    assert not [server for server in fake.servers if server.alive()], "every server is stopped"


def _score(emulator: Emulator, target: str) -> list[list[float]]:
    answer = emulator.invoke(target, BODY, "application/json")
    (output,) = json.loads(answer.body)["outputs"]
    assert output["name"] == "SCORE"
    return np.reshape(output["data"], output["shape"]).tolist()  # type: ignore[no-any-return]


def _loads(fake: FakeLauncher, model: str) -> int:
    """How many times the fake's servers were asked to load `model`."""
    return sum(1 for server in fake.servers for name, _ in server.loads if name == model)


def _held(emulator: Emulator) -> list[tuple[list[str], list[str]]]:
    """What each server of the pool holds: the targets placed in it, and the models it has loaded."""
    return [
        (sorted(slot.holds), sorted(slot.server.ready))  # type: ignore[attr-defined]
        for slot in emulator.servers.slots
    ]


def test_least_recently_used_targets_are_unloaded_under_the_memory_limit(
    emulator: Emulator, fake: FakeLauncher
) -> None:
    a, b, c = TARGETS
    assert _score(emulator, a) == [[0.0]], "the fake's default answer: zeros shaped by the config"
    _score(emulator, b)
    size = emulator.cold_starts[0].bytes
    emulator.settings.memory_limit = size * 2  # room for two
    _score(emulator, a)  # now more recent than b
    _score(emulator, c)
    assert emulator.loaded_targets() == [a, c], "the least recently used went"
    assert [(eviction.target, eviction.for_target) for eviction in emulator.evictions] == [(b, c)]
    assert [sorted(held) for held, _ in _held(emulator)] == [[a], [c]], "b's server is stopped"
    models = ["fraud", "postprocess", "preprocess"]
    assert all(loaded == models for _, loaded in _held(emulator)), "each server loads its target's models"
    assert _score(emulator, b) == [[0.0]], "an evicted target loads again on its next request"
    assert (
        emulator.loaded_targets() == [c, b] and [cold.target for cold in emulator.cold_starts].count(b) == 2
    )
    assert [eviction.target for eviction in emulator.evictions] == [b, a]


def test_a_target_larger_than_the_limit_is_refused_and_nothing_is_evicted(emulator: Emulator) -> None:
    a, b, _ = TARGETS
    _score(emulator, a)
    emulator.settings.memory_limit = emulator.cold_starts[0].bytes - 1
    with pytest.raises(TargetInvalid, match=f"{b} needs .+, more than the memory limit"):
        _score(emulator, b)
    assert emulator.loaded_targets() == [a] and emulator.evictions == []


def test_a_target_serving_a_request_is_never_unloaded(emulator: Emulator, fake: FakeLauncher) -> None:
    a, b, c = TARGETS
    serving, release = threading.Event(), threading.Event()

    def slow_once(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        if not serving.is_set():
            serving.set()
            assert release.wait(30)
        return {"SCORE": np.zeros((1, 1), np.float32)}

    fake.behaviours["fraud"] = slow_once
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(_score, emulator, a)
        try:
            assert serving.wait(30)
            emulator.settings.memory_limit = emulator.cold_starts[0].bytes  # room for one
            _score(emulator, b)
            assert emulator.evictions == [], "a is answering a request: it stays, past the limit"
            assert emulator.loaded_targets() == [a, b]
        finally:
            release.set()
        assert answer.result() == [[0.0]]
    _score(emulator, c)
    assert [eviction.target for eviction in emulator.evictions] == [a, b]
    assert emulator.loaded_targets() == [c]


def test_a_load_past_the_deadline_is_not_ready_then_serves(emulator: Emulator, fake: FakeLauncher) -> None:
    target = TARGETS[0]
    fake.slow["fraud"] = 0.5
    emulator.settings.not_ready_after = 0.05
    with pytest.raises(ModelNotReady, match=f"{target} is still loading after 0.05 s; try again shortly"):
        _score(emulator, target)
    deadline = time.monotonic() + 30
    while True:
        try:
            assert _score(emulator, target) == [[0.0]]
            break
        except ModelNotReady:  # the load started with the short deadline
            assert time.monotonic() < deadline, "the load never finished"
            time.sleep(0.05)
    assert len(emulator.cold_starts) == 1 and _loads(fake, "fraud") == 1, "the load went on, not again"


def test_concurrent_first_requests_load_a_target_once(emulator: Emulator, fake: FakeLauncher) -> None:
    target = TARGETS[0]
    fake.slow["fraud"] = 0.2
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _score(emulator, target), range(4)))
    assert answers == [[[0.0]]] * 4
    assert [cold.target for cold in emulator.cold_starts] == [target] and _loads(fake, "fraud") == 1


def test_a_failed_load_leaves_nothing_and_the_next_request_loads_again(
    emulator: Emulator, fake: FakeLauncher
) -> None:
    target = TARGETS[0]
    fake.refuse["fraud"] = "Invalid argument: what this test asks the fake to answer"
    with pytest.raises(ModelError, match=f"{target} failed to load: Triton refused to load 'fraud'") as error:
        _score(emulator, target)
    assert (error.value.status, error.value.original_status) == (424, 500)
    (cold,) = emulator.cold_starts
    assert (cold.failed, cold.error) == (
        "load",
        "Triton refused to load 'fraud': Invalid argument: what this test asks the fake to answer",
    )
    assert emulator.loaded_targets() == []
    (slot,) = emulator.servers.slots
    assert slot.holds == {} and list(slot.repository.iterdir()) == [], "nothing staged, its names released"
    server = slot.server
    assert isinstance(server, FakeServer) and server.ready == {}, "its steps are unloaded too"
    del fake.refuse["fraud"]
    assert _score(emulator, target) == [[0.0]]
    assert [cold.failed for cold in emulator.cold_starts] == ["load", None]


def test_a_server_that_dies_while_loading_fails_the_load_and_is_reported(
    emulator: Emulator, fake: FakeLauncher
) -> None:
    fake.crash.add("postprocess")
    with pytest.raises(ModelError, match="Triton stopped answering while loading 'fraud'"):
        _score(emulator, TARGETS[0])
    assert emulator.servers.exited() is emulator.servers.slots[0].server
    assert emulator.loaded_targets() == []


def _refusal(client: Any, target: str) -> dict[str, Any]:
    """The error boto3 raised for a request naming `target`: its code, message and HTTP status."""
    with pytest.raises(client.exceptions.ValidationError) as raised:
        client.invoke_endpoint(
            EndpointName="mme", TargetModel=target, ContentType="application/json", Body=BODY
        )
    response = raised.value.response
    return {**response["Error"], "status": response["ResponseMetadata"]["HTTPStatusCode"]}


def test_a_target_model_is_a_key_inside_the_file_store(
    store: MemoryStore, fake: FakeLauncher, tmp_path: Path
) -> None:
    """An absolute path (even to an artifact in the store), `..`, and a link that leads out of the store
    are refused, with the same answer whether or not an artifact is where they lead (through boto3 and the
    front, as SageMaker answers)."""
    directory, outside = tmp_path / "store", tmp_path / "outside"
    directory.mkdir()
    outside.mkdir()
    store.download(TARGETS[0], directory / "fraud_1.tar.gz")
    (directory / "escape").symlink_to(outside)
    file_store = FileStore(f"file://{directory}", directory)
    assert file_store.head("fraud_1.tar.gz") is not None, "a key inside the store is found"
    targets = [
        str(directory / "fraud_1.tar.gz"),
        str(outside / "fraud_1.tar.gz"),
        "../outside/fraud_1.tar.gz",
        "escape/fraud_1.tar.gz",
    ]
    with emulating(file_store, fake, log_path=tmp_path / "mme.log") as emulator, fronted(emulator) as url:
        client = runtime_client(url)
        absent = [_refusal(client, target) for target in targets]
        shutil.copyfile(directory / "fraud_1.tar.gz", outside / "fraud_1.tar.gz")
        assert [_refusal(client, target) for target in targets] == absent, "no existence oracle"
        assert not emulator.cold_starts, "nothing was fetched"
        too_long = "n" * 300 + ".tar.gz"  # a key SageMaker allows, a name no file can have
        assert _refusal(client, too_long)["Message"] == f"no model {too_long} in file://{directory}"
    assert all(error["status"] == 400 and "is not a key in the store" in error["Message"] for error in absent)
    assert "it resolves outside the store" in absent[-1]["Message"]
