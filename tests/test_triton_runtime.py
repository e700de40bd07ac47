"""What only the local Triton launcher does, against a real server (what every launcher does is in
test_launchers.py): an environment Triton unpacks stays in its sandbox, and the server dies with a
killed packager; and the ports a server is asked for, and the example request to try a model with."""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from packager.environments import ensure_environment, lock_model
from packager.environments.venv import VenvBuilder
from packager.modeldir import ModelDir, example_input_tensors
from packager.settings import DEFAULT_RUNTIME
from packager.triton import Ports, PortUnavailable, curl_command, example_request
from packager.triton.launcher import listening_ports
from packager.triton.local import LocalLauncher
from tests.conftest import DOUBLER_CONFIG, child_environment, doubler_repository, infer_doubler
from tests.test_launchers import LocalLeftovers


@pytest.fixture(scope="module")
def launcher() -> LocalLauncher:
    return LocalLauncher.for_runtime(DEFAULT_RUNTIME)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return doubler_repository(tmp_path)


def test_packed_environment_unpacked_by_triton_is_removed(
    launcher: LocalLauncher, repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ModelDir(tmp_path / "m")
    model.path.mkdir()
    (model.path / "requirements.txt").write_text("numpy<2\n")
    lock_model(model, DEFAULT_RUNTIME)
    environment = ensure_environment(model, DEFAULT_RUNTIME, VenvBuilder())
    shutil.copyfile(environment.tarball, repository / "doubler" / "python_env.tar.gz")
    config = repository / "doubler" / "config.pbtxt"
    config.write_text(
        DOUBLER_CONFIG
        + 'parameters: { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" } }\n'
    )
    with launcher.start(repository, tmp_path / "triton.log") as server:
        leftovers = LocalLeftovers(server)
        server.load("doubler")
        assert infer_doubler(server) == [[3.0, -4.0]]
        assert any(path.startswith("/tmp/python_env_") for path in leftovers.snapshot()), "Triton unpacked it"
    assert leftovers.remaining() == []


ORPHAN = """
import sys, time
from pathlib import Path
from packager.settings import DEFAULT_RUNTIME
from packager.triton.local import LocalLauncher
launcher = LocalLauncher.for_runtime(DEFAULT_RUNTIME)
with launcher.start(Path(sys.argv[1]), Path(sys.argv[2])) as server:
    server.load("doubler")
    print(server.process.pid, flush=True)
    time.sleep(300)
"""


def test_server_dies_with_a_killed_packager(repository: Path, tmp_path: Path) -> None:
    """SIGKILL runs no cleanup code: the kernel takes the server down with the packager (PDEATHSIG)."""
    environment = child_environment()
    packager = subprocess.Popen(
        [sys.executable, "-c", ORPHAN, str(repository), str(tmp_path / "triton.log")],
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert packager.stdout is not None
    server_pid = int(packager.stdout.readline())
    packager.kill()
    packager.wait()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{server_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    state = (
        Path(f"/proc/{server_pid}/stat").read_text().split()[2]
        if Path(f"/proc/{server_pid}").exists()
        else "gone"
    )
    assert state in ("gone", "Z"), f"tritonserver {server_pid} outlived its packager (state {state})"


def test_ports_asked_for_are_checked_and_kept_out_of_the_free_ones() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            PortUnavailable, match=f"port {port} \\(--http-port\\) is already in use on 127.0.0.1"
        ):
            listening_ports(Ports(http=port))
    http, grpc, metrics = listening_ports(Ports(http=port))
    assert http == port and len({http, grpc, metrics}) == 3
    with pytest.raises(PortUnavailable, match="--http-port and --grpc-port are both"):
        listening_ports(Ports(http=port, grpc=port))


def _config(text: str) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(text, config)
    return config


def test_example_request_of_a_batched_model() -> None:
    config = _config(
        DOUBLER_CONFIG.replace(
            'input [ { name: "X", data_type: TYPE_FP32, dims: [ 2 ] } ]',
            'input [ { name: "X", data_type: TYPE_FP32, dims: [ -1, 2 ] },'
            '{ name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] },'
            '{ name: "MASK", data_type: TYPE_BOOL, dims: [ 1 ], optional: true } ]',
        )
    )
    assert example_request(example_input_tensors(config)) == {
        "inputs": [
            {"name": "X", "shape": [1, 1, 2], "datatype": "FP32", "data": [0.0, 0.0]},
            {"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [""]},
        ]
    }


def test_example_request_of_an_unbatched_model_and_its_curl() -> None:
    config = _config(
        'backend: "python"\n'
        'input [ { name: "IDS", data_type: TYPE_INT64, dims: [ 2, -1 ] },'
        '{ name: "FLAGS", data_type: TYPE_BOOL, dims: [ 3 ] } ]\n'
        'output [ { name: "Y", data_type: TYPE_FP16, dims: [ 1 ] } ]\n'
    )
    request = example_request(example_input_tensors(config))
    assert request == {
        "inputs": [
            {"name": "IDS", "shape": [2, 1], "datatype": "INT64", "data": [0, 0]},
            {"name": "FLAGS", "shape": [3], "datatype": "BOOL", "data": [False, False, False]},
        ]
    }
    words = shlex.split(curl_command("127.0.0.1:8000", "scorer", inputs=example_input_tensors(config)))
    assert words[:-1] == [
        "curl",
        "-sS",
        "http://127.0.0.1:8000/v2/models/scorer/infer",
        "-H",
        "Content-Type: application/json",
        "-d",
    ]
    assert json.loads(words[-1]) == request
