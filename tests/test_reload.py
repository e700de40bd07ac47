"""`serve --reload`'s watcher without a server: which saves reload which Triton models, and which are
refused before Triton sees them (the real server's side is in test_replay_real.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from packager.modeldir import ModelDir
from packager.triton import LOAD_TIMEOUT, Served, Watcher
from packager.validation import validate_model
from tests.conftest import copy_example


class RecordingServer:
    """Stands in for a running Triton: records what it was asked to load, and within how long."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.timeouts: list[float] = []

    def load(self, model: str, timeout: float = LOAD_TIMEOUT) -> None:
        self.loads.append(model)
        self.timeouts.append(timeout)


@pytest.fixture
def watched(tmp_path: Path) -> tuple[Watcher, RecordingServer, Path]:
    (tmp_path / "pants.toml").write_text("")
    model = ModelDir(copy_example("churn", tmp_path))
    repository = tmp_path / "served"
    report = validate_model(model)
    for name in report.triton_models:
        (repository / name).mkdir(parents=True)
    server = RecordingServer()
    served = Served(server, repository, report.triton_models, "churn", "packed", 600.0)  # type: ignore[arg-type]
    return Watcher(model, served, None), server, tmp_path


def _save(path: Path, text: str) -> None:
    """Append to a file and move its time on, as an editor's save does."""
    with path.open("a") as stream:
        stream.write(text)
    later = time.time() + 5
    os.utime(path, (later, later))


def test_a_saved_step_is_restaged_and_loaded(watched: tuple[Watcher, RecordingServer, Path]) -> None:
    watcher, server, root = watched
    assert watcher.changes() == []
    step = root / "models" / "churn" / "churn" / "1" / "model.py"
    _save(step, "\n# One batch at a time.\n")
    changed = watcher.changes()
    assert changed == [step]
    result = watcher.reload(changed)
    assert (result.reloaded, result.problems, result.refused) == (["churn"], [], None)
    assert server.loads == ["churn"]
    assert server.timeouts == [600.0], "a reload waits as long as serve's --load-timeout"
    assert (watcher.served.repository / "churn" / "1" / "model.py").read_text() == step.read_text()
    assert watcher.changes() == [], "a change is reported once"


def test_shared_code_reloads_the_steps_that_import_it(watched: tuple[Watcher, RecordingServer, Path]) -> None:
    watcher, server, root = watched
    _save(root / "libs" / "modelkit" / "onnx.py", "# One thread per instance.\n")
    result = watcher.reload(watcher.changes())
    assert result.reloaded == ["churn"] and server.loads == ["churn"]
    assert (watcher.served.repository / "churn" / "1" / "modelkit" / "onnx.py").is_file()


def test_what_cannot_be_reloaded_says_why_and_loads_nothing(
    watched: tuple[Watcher, RecordingServer, Path],
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
