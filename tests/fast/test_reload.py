"""`serve --reload`'s watcher on a fake server: which saves reload which Triton models, which are refused
before Triton sees them, and a load the server refuses keeps the last good version serving (the real
server's side is in test_replay_real.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from packager.modeldir import ModelDir
from packager.triton import Served, Watcher, load_all, staged_repository
from packager.triton.fake import FakeLauncher, FakeServer
from packager.validation import validate_model
from tests.conftest import copy_example

Watched = tuple[Watcher, FakeServer, Path]


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Watched]:
    """churn, staged and loaded in a fake server that `serve --load-timeout 600` watches; the loads it is
    asked for from then on."""
    (tmp_path / "pants.toml").write_text("")
    model = ModelDir(copy_example("churn", tmp_path))
    report = validate_model(model)
    with staged_repository(report, None, "packed") as repository:
        with FakeLauncher().start(repository, tmp_path / "triton.log") as server:
            load_all(server, report.triton_models)
            server.loads.clear()
            served = Served(server, repository, report.triton_models, "churn", "packed", 600.0)
            yield Watcher(model, served, None), server, tmp_path


def _save(path: Path, text: str) -> None:
    """Append to a file and move its time on, as an editor's save does."""
    with path.open("a") as stream:
        stream.write(text)
    later = time.time() + 5
    os.utime(path, (later, later))


def test_a_saved_step_is_restaged_and_loaded(watched: Watched) -> None:
    watcher, server, root = watched
    assert watcher.changes() == []
    step = root / "models" / "churn" / "churn" / "1" / "model.py"
    _save(step, "\n# One batch at a time.\n")
    changed = watcher.changes()
    assert changed == [step]
    result = watcher.reload(changed)
    assert (result.reloaded, result.problems, result.refused) == (["churn"], [], None)
    assert server.loads == [("churn", 600.0)], "a reload waits as long as serve's --load-timeout"
    assert (watcher.served.repository / "churn" / "1" / "model.py").read_text() == step.read_text()
    assert watcher.changes() == [], "a change is reported once"


def test_shared_code_reloads_the_steps_that_import_it(watched: Watched) -> None:
    watcher, server, root = watched
    _save(root / "libs" / "modelkit" / "onnx.py", "# One thread per instance.\n")
    result = watcher.reload(watcher.changes())
    assert result.reloaded == ["churn"] and server.loads == [("churn", 600.0)]
    assert (watcher.served.repository / "churn" / "1" / "modelkit" / "onnx.py").is_file()


def test_what_cannot_be_reloaded_says_why_and_loads_nothing(
    watched: Watched,
) -> None:
    watcher, server, root = watched
    model = root / "models" / "churn"
    _save(model / "tests" / "cases" / "customer_0.json", " ")
    result = watcher.reload(watcher.changes())
    assert (result.reloaded, result.problems) == ([], []), "a test case is no Triton model's file"

    _save(model / "requirements.txt", "pandas\n")
    result = watcher.reload(watcher.changes())
    assert (
        result.reloaded == []
        and "requirements changed: stop and start `packager serve`" in result.problems[0]
    )

    config = model / "churn" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size", "max_batch_sizes"))
    os.utime(config, (time.time() + 10, time.time() + 10))
    result = watcher.reload(watcher.changes())
    assert result.reloaded == [] and any("churn/config.pbtxt:" in problem for problem in result.problems)
    assert server.loads == []


def test_a_reload_the_server_refuses_keeps_the_last_good_version_serving(watched: Watched) -> None:
    watcher, server, root = watched
    server.launcher.refuse["churn"] = "Invalid argument: a refusal this test asks for"
    _save(root / "models" / "churn" / "churn" / "1" / "model.py", "\n# A bad edit.\n")
    result = watcher.reload(watcher.changes())
    assert result.reloaded == [] and result.refused is not None
    assert result.refused.startswith("Triton refused to load 'churn': Invalid argument: a refusal this test")
    assert "churn" in server.ready, "the last good version serves on"
