"""`packager replay`, `serve` and `new` end to end, through a real Triton server."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import IO

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.conftest import RunPackager, copy_example, serve_banner, start_packager


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A monorepo holding a copy of the churn model (weights included)."""
    (tmp_path / "pants.toml").write_text("")
    copy_example("churn", tmp_path)
    return tmp_path


def test_wrong_expected_output_fails_with_a_readable_diff(run_packager: RunPackager, repo: Path) -> None:
    case = repo / "models" / "churn" / "tests" / "cases" / "customer_1.json"
    document = json.loads(case.read_text())
    real = document["outputs"][0]["data"][0]
    document["outputs"][0]["data"] = [0.5]
    case.write_text(json.dumps(document))

    result = run_packager("replay", "churn", "--junit-xml", "dist/replay.xml", cwd=repo)
    assert result.returncode == 1, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["churn", "customer_1", "http", "FAIL"] == rows[
        [r[:2] for r in rows].index(["churn", "customer_1"])
    ][:4]
    assert sum(1 for row in rows if row[3:4] == ["ok"]) == 8
    diff = re.search(
        r"churn customer_1 \[grpc\]: PROBABILITY: 1 of 1 values differ: \[0, 0\] expected 0.5 ±1e-05, got (\S+)",
        result.stdout,
    )
    assert diff is not None and abs(float(diff.group(1)) - real) <= 1e-5
    assert result.stderr.endswith("8 passed, 2 failed\n")
    junit = ElementTree.parse(repo / "dist" / "replay.xml").getroot().find("testsuite")
    assert junit is not None and (junit.get("tests"), junit.get("failures")) == ("10", "2")
    assert not any(Path("/tmp").glob("packager-repo-churn-*")), "the staged repository is removed"


def test_json_report_over_one_protocol(run_packager: RunPackager, repo: Path) -> None:
    result = run_packager("replay", "--json", "--protocol", "grpc", "--env-mode", "packed", "churn", cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is True
    results = report["models"][0]["results"]
    assert {item["protocol"] for item in results} == {"grpc"} and len(results) == 5


def test_missing_weights_stop_before_triton_with_the_fixing_command(
    run_packager: RunPackager, repo: Path
) -> None:
    (repo / "models" / "churn" / "churn" / "1" / "model.onnx").unlink()
    result = run_packager("replay", "churn", cwd=repo)
    assert result.returncode == 1
    assert "models/churn/churn/1/model.onnx: missing (tracked by DVC): fetch it with `" in result.stdout
    assert "pull models/churn/churn/1/model.onnx.dvc`" in result.stdout


def test_new_model_replays_out_of_the_box(run_packager: RunPackager, tmp_path: Path) -> None:
    (tmp_path / "pants.toml").write_text("")
    (tmp_path / "models").mkdir()
    created = run_packager("new", "fraud", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert run_packager("validate", "fraud", cwd=tmp_path).returncode == 0
    replayed = run_packager("replay", "fraud", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stderr.endswith("4 passed, 0 failed\n")


def test_serve_prints_endpoints_answers_and_cleans_up_on_ctrl_c(repo: Path) -> None:
    process = start_packager("serve", "churn", cwd=repo)
    try:
        lines = serve_banner(process)
        endpoints = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  ")}
        assert endpoints["HTTP"].endswith("/v2/models/churn")
        client = httpclient.InferenceServerClient(endpoints["HTTP"].removeprefix("http://").split("/")[0])
        features = httpclient.InferInput("FEATURES", [1, 8], "FP32")
        features.set_data_from_numpy(np.zeros((1, 8), dtype=np.float32))
        probability = client.infer("churn", [features]).as_numpy("PROBABILITY")
        client.close()
        assert probability is not None and probability.shape == (1, 1) and 0.0 <= probability[0, 0] <= 1.0
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert process.returncode == 130
    log = Path(endpoints["log"])
    assert log.is_file()
    survivors = subprocess.run(
        ["pgrep", "-f", "--model-repository=/tmp/packager-repo-churn-"], capture_output=True, text=True
    )
    own = [
        pid
        for pid in survivors.stdout.split()
        if str(repo) in Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
    ]
    assert own == []


class Lines:
    """The lines a process prints, read on a thread so that a test can wait for one with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line)

    def until(self, marker: str, timeout: float = 120) -> list[str]:
        """The lines up to the first that contains `marker`."""
        lines = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            lines.append(line)
            self.seen.append(line)
            if marker in line:
                return lines
        raise AssertionError(f"no line with {marker!r} within {timeout} s; printed:\n{''.join(self.seen)}")


def _score(http: str, features: list[float]) -> float:
    client = httpclient.InferenceServerClient(http)
    try:
        tensor = httpclient.InferInput("FEATURES", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.array([features], dtype=np.float32))
        score = client.infer("fraud", [tensor]).as_numpy("SCORE")
        assert score is not None
        return float(score[0, 0])
    finally:
        client.close()


def test_serve_reload_applies_a_save_and_keeps_the_last_good_version_on_a_bad_one(
    run_packager: RunPackager, tmp_path: Path
) -> None:
    """`serve --reload` through a real Triton: a saved step serves its new code; a config the validator
    refuses and a step Triton refuses to load leave the last good version answering."""
    (tmp_path / "pants.toml").write_text("")
    assert run_packager("new", "fraud", cwd=tmp_path).returncode == 0
    step = tmp_path / "models" / "fraud" / "preprocess" / "1" / "model.py"
    config = tmp_path / "models" / "fraud" / "preprocess" / "config.pbtxt"
    process = start_packager("serve", "fraud", "--reload", cwd=tmp_path, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    lines = Lines(process.stdout)
    try:
        started = lines.until("Watching for changes")
        http = next(line.split()[1] for line in started if line.startswith("  HTTP"))
        http = http.removeprefix("http://").split("/")[0]
        features = [5.0, 5.0, 5.0, 5.0]
        first = _score(http, features)

        step.write_text(step.read_text().replace("10.0, 10.0, 10.0, 10.0", "20.0, 20.0, 20.0, 20.0"))
        assert lines.until("reloaded")[-1].startswith("reloaded preprocess in ")
        second = _score(http, features)
        assert second != first, "the saved step serves its new code"

        good_config = config.read_text()
        config.write_text(good_config.replace("max_batch_size: 8", "max_batch_size: eight"))
        refused = lines.until("not reloaded")
        assert any("models/fraud/preprocess/config.pbtxt:" in line for line in refused), refused
        assert _score(http, features) == second

        config.write_text(good_config)
        assert lines.until("reloaded")[-1].startswith("reloaded preprocess in ")
        step.write_text(step.read_text() + "\nraise RuntimeError('broken on import')\n")
        refused = lines.until("not reloaded")
        assert any("Triton refused to load 'preprocess'" in line for line in refused), refused
        assert refused[-1].startswith("not reloaded: the last good version still serves")
        assert _score(http, features) == second, "the last good version still answers"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert process.returncode == 130, "".join(lines.seen)
