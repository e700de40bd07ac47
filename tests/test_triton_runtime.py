"""The local Triton launcher against a real server: start, load, fail, hang, crash; nothing left behind
on the host (what Triton unpacks or maps stays in its sandbox)."""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import signal
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
from packager.modeldir import ModelDir, TritonModel, example_input_tensors, read_config
from packager.settings import DEFAULT_RUNTIME
from packager.triton import (
    Ports,
    PortUnavailable,
    Server,
    ServerError,
    ServerStartError,
    UnservableModel,
    curl_command,
    example_request,
    loaded,
)
from packager.triton.cleanup import group_members
from packager.triton.launcher import listening_ports
from packager.triton.local import LocalLauncher
from tests.conftest import DOUBLER_CONFIG, child_environment, doubler_repository, infer_doubler

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture(scope="module")
def launcher() -> LocalLauncher:
    return LocalLauncher.for_runtime(DEFAULT_RUNTIME, progress=False)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return doubler_repository(tmp_path)


TRITON_DROPPINGS = ("/tmp/python_env_*", "/dev/shm/triton_python_backend_shm_region_*")


def _droppings(root: str = "") -> set[str]:
    """Triton's unpacked environments and python-backend shm regions, as seen below `root`."""
    return {path[len(root) :] for pattern in TRITON_DROPPINGS for path in glob.glob(root + pattern)}


class Leftovers:
    """What one server could leave behind on the host: its processes, and Triton's unpacked environments
    and shm regions, which its sandbox keeps in a private /tmp and /dev/shm."""

    def __init__(self, server: Server) -> None:
        self.group = server.process.pid  # type: ignore[attr-defined]
        self.on_host = _droppings()
        self.inside: set[str] = set()

    def snapshot(self) -> None:
        """Note what the server's processes see under /tmp and /dev/shm now (through /proc/<pid>/root)."""
        for pid in group_members(self.group):
            self.inside |= _droppings(f"/proc/{pid}/root")

    def remaining(self) -> list[str]:
        found = [f"process {pid}" for pid in group_members(self.group)]
        return found + sorted(_droppings() - self.on_host)


def test_start_load_infer_stop_leaves_nothing(
    launcher: LocalLauncher, repository: Path, tmp_path: Path
) -> None:
    with launcher.start(repository, tmp_path / "triton.log") as server:
        leftovers = Leftovers(server)
        server.load("doubler")
        assert infer_doubler(server) == [[3.0, -4.0]]
        leftovers.snapshot()
        assert any(path.startswith("/dev/shm/") for path in leftovers.inside), "the python backend maps shm"
    assert not server.alive()
    assert leftovers.remaining() == []


def test_packed_environment_unpacked_by_triton_is_removed(
    launcher: LocalLauncher, repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ModelDir(tmp_path / "m")
    model.path.mkdir()
    (model.path / "requirements.txt").write_text("numpy<2\n")
    lock_model(model, DEFAULT_RUNTIME)
    environment = ensure_environment(model, DEFAULT_RUNTIME, VenvBuilder(), progress=False)
    shutil.copyfile(environment.tarball, repository / "doubler" / "python_env.tar.gz")
    config = repository / "doubler" / "config.pbtxt"
    config.write_text(
        DOUBLER_CONFIG
        + 'parameters: { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" } }\n'
    )
    with launcher.start(repository, tmp_path / "triton.log") as server:
        leftovers = Leftovers(server)
        server.load("doubler")
        assert infer_doubler(server) == [[3.0, -4.0]]
        leftovers.snapshot()
        assert any(path.startswith("/tmp/python_env_") for path in leftovers.inside), "Triton unpacked it"
    assert leftovers.remaining() == []


def test_refused_load_carries_tritons_reason_and_log(launcher: LocalLauncher, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(CORPUS / "bad" / "bad_dims", repository)
    with launcher.start(repository, tmp_path / "triton.log") as server:
        with pytest.raises(ServerError) as error:
            server.load("scorer")
    message = str(error.value)
    assert message.startswith("Triton refused to load 'scorer': ")
    assert "dimension must be integer >= 1" in message
    assert "  | " in message, "the server log excerpt is attached"


def test_hung_load_fails_within_its_timeout_and_leaves_nothing(
    launcher: LocalLauncher, tmp_path: Path
) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(CORPUS / "bad" / "missing_model_py", repository)  # Triton 2.51 hangs loading this
    hung = (
        r"loading 'scorer' did not finish within 5 s \(a hung load, or a slower one: raise --load-timeout\)"
    )
    with pytest.raises(ServerError, match=hung):
        with launcher.start(repository, tmp_path / "triton.log") as server:
            leftovers = Leftovers(server)
            server.load("scorer", timeout=5)
    assert leftovers.remaining() == []


def test_crashed_server_is_reported_and_cleaned_up(
    launcher: LocalLauncher, repository: Path, tmp_path: Path
) -> None:
    with launcher.start(repository, tmp_path / "triton.log") as server:
        leftovers = Leftovers(server)
        server.load("doubler")
        leftovers.snapshot()
        os.kill(leftovers.group, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.alive()
        with pytest.raises(ServerError, match="Triton stopped answering while loading 'doubler'"):
            server.load("doubler", timeout=5)
    assert leftovers.remaining() == []


def test_server_that_cannot_start_says_why(launcher: LocalLauncher, tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match="Triton exited with status 1 while starting") as error:
        with launcher.start(tmp_path / "no-such-repository", tmp_path / "triton.log"):
            pass
    assert "no-such-repository" in str(error.value)


def test_interrupt_while_serving_still_cleans_up(
    launcher: LocalLauncher, repository: Path, tmp_path: Path
) -> None:
    with pytest.raises(KeyboardInterrupt):
        with launcher.start(repository, tmp_path / "triton.log") as server:
            leftovers = Leftovers(server)
            server.load("doubler")
            leftovers.snapshot()
            raise KeyboardInterrupt
    assert leftovers.remaining() == []


ORPHAN = """
import sys, time
from pathlib import Path
from packager.settings import DEFAULT_RUNTIME
from packager.triton.local import LocalLauncher
launcher = LocalLauncher.for_runtime(DEFAULT_RUNTIME, progress=False)
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


def test_a_backend_the_server_lacks_is_refused_before_it_starts(
    launcher: LocalLauncher, tmp_path: Path
) -> None:
    repository = tmp_path / "repo"
    (repository / "scorer" / "1").mkdir(parents=True)
    (repository / "scorer" / "config.pbtxt").write_text(
        'backend: "onnxruntime"\nmax_batch_size: 4\n'
        'input [ { name: "X", data_type: TYPE_FP32, dims: [ 2 ] } ]\n'
        'output [ { name: "Y", data_type: TYPE_FP32, dims: [ 2 ] } ]\n'
    )
    models = {
        "scorer": TritonModel(repository / "scorer", read_config(repository / "scorer" / "config.pbtxt"))
    }
    with pytest.raises(
        UnservableModel,
        match="scorer needs the onnxruntime backend; the local launcher's Triton has only python",
    ):
        with loaded(repository, models, launcher, tmp_path / "triton.log", env_portable=None):
            pass
    assert not (tmp_path / "triton.log").exists(), "no server started"


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
    words = shlex.split(curl_command("127.0.0.1:8000", "scorer", example_input_tensors(config)))
    assert words[:-1] == [
        "curl",
        "-sS",
        "http://127.0.0.1:8000/v2/models/scorer/infer",
        "-H",
        "Content-Type: application/json",
        "-d",
    ]
    assert json.loads(words[-1]) == request
