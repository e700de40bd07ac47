"""What only the container launcher does, against a real engine (podman's Docker-API service in CI) and
the image built here (what every launcher does is in test_launchers.py): no network, SIGTERM and SIGKILL
leave no container behind, a missing image or engine, the image built once, shm size; and `replay` of an
example model in the container, as the endpoint's image would load it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from packager.errors import EnvironmentFailure
from packager.modeldir import Case, Tensor
from packager.replay import replay_cases
from packager.settings import Runtime
from packager.triton import build_image, check_image, image_for
from packager.triton.container import ContainerLauncher, remove_orphans
from packager.triton.engine import connect
from tests.conftest import (
    RunPackager,
    child_environment,
    copy_example,
    doubler_repository,
    network_targets,
    reach_repository,
    reached,
    start_packager,
)
from tests.test_launchers import our_containers

REPO = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def launcher(container_runtime: Runtime) -> ContainerLauncher:
    return ContainerLauncher.for_runtime(container_runtime)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return doubler_repository(tmp_path)


def test_model_code_in_the_container_has_no_network(
    launcher: ContainerLauncher, tmp_path: Path, loopback_service: int
) -> None:
    """The container has nothing but its own loopback: no service of this machine, no metadata address,
    no DNS; the packager still reaches the server (through the relays)."""
    with launcher.start(reach_repository(tmp_path), tmp_path / "triton.log") as server:
        server.load("reach")
        assert reached(server, network_targets(loopback_service)) == []
    networked = ContainerLauncher(launcher.image, backends=launcher.backends, network=True)
    with networked.start(reach_repository(tmp_path / "again"), tmp_path / "again.log") as server:
        server.load("reach")
        target = f"tcp:127.0.0.1:{loopback_service}"
        assert reached(server, [target]) == [target], "network = true shares the host's network"


SERVE_FOREVER = """
import sys, time
from pathlib import Path
from packager.triton.container import ContainerLauncher
launcher = ContainerLauncher(sys.argv[1])
with launcher.start(Path(sys.argv[2]), Path(sys.argv[3])) as server:
    print("ready", flush=True)
    time.sleep(300)
"""


def _serving(image: str, repository: Path, log: Path) -> subprocess.Popen[str]:
    environment = child_environment()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_FOREVER, image, str(repository), str(log)],
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_sigterm_removes_the_container_and_sigkill_leaves_one_the_next_start_removes(
    launcher: ContainerLauncher, repository: Path, tmp_path: Path, run_packager: RunPackager
) -> None:
    # SIGTERM: the packager's main() turns it into an exit, so its cleanup runs.
    repo = tmp_path / "mono"
    copy_example("churn", repo)
    shutil.copy(REPO / "packager.toml", repo / "packager.toml")
    serve = start_packager("serve", "churn", "--runtime", "container", "--json", cwd=repo)
    assert serve.stdout is not None
    document = json.loads("".join(iter(lambda: serve.stdout.readline() if serve.stdout else "", "}\n")) + "}")
    assert document["runtime"] == "container" and our_containers(serve.pid)
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=60) == 128 + signal.SIGTERM
    assert our_containers(serve.pid) == []
    # SIGKILL: no code runs, the container stays; the next start on this machine removes it.
    killed = _serving(launcher.image, repository, tmp_path / "killed.log")
    killed.kill()
    killed.wait()
    (orphan,) = our_containers(killed.pid)
    client = connect()
    try:
        assert orphan in remove_orphans(client)
    finally:
        client.close()
    assert our_containers(killed.pid) == []


def test_a_missing_image_or_engine_is_a_clear_error(
    container_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = replace(container_runtime, name="elsewhere", image="localhost/packager/nothing:here")
    with pytest.raises(
        EnvironmentFailure,
        match=r"serves with image localhost/packager/nothing:here, which is not here: pull it",
    ):
        ContainerLauncher.for_runtime(missing)
    with pytest.raises(
        EnvironmentFailure, match=r"stub runs CPython 3.11, but runtime 'container' says 3.12"
    ):
        mistaken = replace(container_runtime, image=image_for(container_runtime), python="3.12")
        ContainerLauncher.for_runtime(mistaken)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(
        EnvironmentFailure, match=r"no container engine answers at unix:///nonexistent.*--runtime local"
    ):
        ContainerLauncher.for_runtime(container_runtime)


def test_the_image_is_built_once_and_checked_against_its_profile(container_runtime: Runtime) -> None:
    again = build_image(container_runtime)
    assert again.built is False and again.tag == image_for(container_runtime), "an unchanged image is a no-op"
    facts = check_image(again.tag)
    assert (facts.triton_version, facts.python, facts.backends) == ("2.51.0", "3.11", ["python"])
    assert facts.differences(container_runtime) == []
    assert facts.differences(replace(container_runtime, python="3.12")) == [
        "its stub's Python is 3.11, not 3.12"
    ]


def test_replay_in_the_container_reports_where_it_ran(
    run_packager: RunPackager, tmp_path: Path, container_runtime: Runtime
) -> None:
    repo = tmp_path / "mono"
    copy_example("churn", repo)
    shutil.copy(REPO / "packager.toml", repo / "packager.toml")
    result = run_packager("replay", "churn", "--json", "--junit-xml", "replay.xml", cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["runtime"], report["launcher"], report["passed"]) == ("container", "container", True)
    assert '<property name="runtime" value="container"' in (repo / "replay.xml").read_text()
    assert our_containers() == []


ECHO = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
            for r in requests
        ]
"""
ECHO_CONFIG = """backend: "python"
input [ { name: "X", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "Y", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""


def test_a_tensor_larger_than_the_containers_shm_says_what_to_raise(
    launcher: ContainerLauncher, tmp_path: Path
) -> None:
    (tmp_path / "repo" / "echo" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "echo" / "1" / "model.py").write_text(ECHO)
    (tmp_path / "repo" / "echo" / "config.pbtxt").write_text(ECHO_CONFIG)
    small = ContainerLauncher(launcher.image, shm_size="8m", backends=launcher.backends)
    big = np.ones(8 * 1024 * 1024, dtype=np.float32)  # 32 MB through an 8 MB /dev/shm
    case = Case(
        "big", tmp_path / "big.json", "echo", "", (Tensor("X", "FP32", big),), (Tensor("Y", "FP32", big),)
    )
    with small.start(tmp_path / "repo", tmp_path / "triton.log") as server:
        server.load("echo")
        (result,) = replay_cases("echo", server, cases=[case], protocols=("http",))
    assert not result.passed
    assert "raise the runtime's shm_size" in result.problems[0], result.problems
