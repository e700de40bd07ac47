"""Shared fixtures: the packager CLI run as a user would, a real S3 API on loopback (moto), and a git
repository holding a model made by `packager new`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import tritonclient.http as httpclient
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from packager.artifacts.provenance import CI_BRANCH_VARIABLES, CI_COMMIT_VARIABLES
from packager.config import load_config
from packager.environments import lock_model
from packager.modeldir import LOCK_FILE, ModelDir, scaffold
from packager.settings import DEFAULT_RUNTIME, Runtime
from packager.triton import Server, build_image

# conda-forge cannot be reached where this suite runs: conda environments take Python from the local
# channel, made from this machine's CPython (the override users have too).
os.environ.setdefault("PACKAGER_CONDA_CHANNELS", "local")

RunPackager = Callable[..., subprocess.CompletedProcess[str]]
# A test that means CI's branch and commit says so; the CI running these tests must not lend its own.
CI_REVISION_VARIABLES = {*CI_BRANCH_VARIABLES, *CI_COMMIT_VARIABLES}


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child Python that runs this checkout's code: this process's, with its import
    path, without the CI system's branch and commit variables, then `extra`."""
    inherited = {name: value for name, value in os.environ.items() if name not in CI_REVISION_VARIABLES}
    python_path = os.pathsep.join(os.path.abspath(entry) for entry in sys.path)
    return {**inherited, "PYTHONPATH": python_path, **(extra or {})}


@pytest.fixture
def run_packager() -> RunPackager:
    """Run `python -m packager ARGS` in `cwd` and return the finished process (text output), without the
    CI system's branch and commit variables unless `env` gives them."""

    def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "packager", *args],
            cwd=cwd,
            env=child_environment(env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def start_packager(*args: str, cwd: Path, stderr: int = subprocess.PIPE) -> subprocess.Popen[str]:
    """`python -m packager ARGS` started in `cwd` (a server, say), its output read as text while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", "packager", *args],
        cwd=cwd,
        env=child_environment(),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def serve_banner(process: subprocess.Popen[str]) -> list[str]:
    """The lines a started `packager serve` prints up to "Ctrl-C stops ...", when its server is ready."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Ctrl-C"):
            break
    return lines


# A python model that doubles its input: what the launcher tests serve.
DOUBLER = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", (x * 2).astype(np.float32))]))
        return out
"""
DOUBLER_CONFIG = """backend: "python"
max_batch_size: 4
input [ { name: "X", data_type: TYPE_FP32, dims: [ 2 ] } ]
output [ { name: "Y", data_type: TYPE_FP32, dims: [ 2 ] } ]
"""


def python_model_repository(parent: Path, name: str, code: str, config: str) -> Path:
    """`parent/repo`, a Triton model repository holding one python model."""
    (parent / "repo" / name / "1").mkdir(parents=True)
    (parent / "repo" / name / "1" / "model.py").write_text(code)
    (parent / "repo" / name / "config.pbtxt").write_text(config)
    return parent / "repo"


def doubler_repository(parent: Path) -> Path:
    """A Triton model repository under `parent` holding the doubler."""
    return python_model_repository(parent, "doubler", DOUBLER, DOUBLER_CONFIG)


def infer_doubler(server: Server) -> list[list[float]]:
    """What the doubler answers for [[1.5, -2.0]] over HTTP."""
    client = httpclient.InferenceServerClient(server.endpoints.http)
    try:
        tensor = httpclient.InferInput("X", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.array([[1.5, -2.0]], dtype=np.float32))
        result: list[list[float]] = client.infer("doubler", [tensor]).as_numpy("Y").tolist()
        return result
    finally:
        client.close()  # before the server stops: Triton waits for open connections


# NVIDIA's python_backend decoupled examples, shaped as upstream ships them (written here, not copied).
# `repeat` answers from a thread of its own: each element of IN as a response (OUT, and its index IDX), then
# the final flag alone, an empty final response. `square` sends N responses holding N for an input N, the
# last one carrying the final flag (the flag alone for 0).
REPEAT = """
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.inflight = []

    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            thread = threading.Thread(target=self.repeat, args=(request.get_response_sender(), values))
            thread.start()
            self.inflight.append(thread)
        return None

    def repeat(self, sender, values):
        for index in range(values.shape[0]):
            out = pb_utils.Tensor("OUT", values[index : index + 1])
            idx = pb_utils.Tensor("IDX", np.array([index], dtype=np.uint32))
            sender.send(pb_utils.InferenceResponse([out, idx]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for thread in self.inflight:
            thread.join()
"""
REPEAT_CONFIG = """name: "repeat"
backend: "python"
model_transaction_policy { decoupled: true }
input [ { name: "IN", data_type: TYPE_INT32, dims: [ -1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }, { name: "IDX", data_type: TYPE_UINT32, dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU } ]
"""
SQUARE = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            n = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            for index in range(n):
                out = pb_utils.Tensor("OUT", np.array([n], dtype=np.int32))
                final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if index == n - 1 else 0
                sender.send(pb_utils.InferenceResponse([out]), flags=final)
            if n == 0:
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""
SQUARE_CONFIG = """name: "square"
backend: "python"
model_transaction_policy { decoupled: true }
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""


def one_model_dir(
    parent: Path, name: str, code: str, config: str, cases: Mapping[str, object] | None = None
) -> Path:
    """`parent/<name>`, a model directory holding one python Triton model of that name, and `cases` (by
    name) as its tests/cases/*.json."""
    python_model_repository(parent, name, code, config).rename(parent / name)
    (parent / name / "model_version.txt").write_text("1\n")
    (parent / name / "tests" / "cases").mkdir(parents=True)
    for case, document in (cases or {}).items():
        (parent / name / "tests" / "cases" / f"{case}.json").write_text(json.dumps(document, indent=2) + "\n")
    return parent / name


# What the probes try on the network: "tcp:<host>:<port>" connects, "dns:<name>" resolves. What answers
# is reported: nothing may.
NETWORK_PROBE = """
import socket


def _reached(target):
    kind, _, rest = target.partition(":")
    try:
        if kind == "dns":
            return bool(socket.getaddrinfo(rest, 443))
        host, _, port = rest.rpartition(":")
        socket.create_connection((host, int(port)), timeout=3).close()
        return True
    except OSError:
        return False
"""
# A service of this machine (the S3 the tests publish to is one too), the metadata address clouds hand
# credentials out on (it answers on this machine kind), and a public name.
METADATA = "tcp:169.254.169.254:80"
DNS = "dns:pypi.org"


def network_targets(loopback_port: int) -> list[str]:
    """What a probe tries: `loopback_port` on 127.0.0.1, the metadata address and DNS."""
    return [f"tcp:127.0.0.1:{loopback_port}", METADATA, DNS]


@pytest.fixture
def loopback_service() -> Iterator[int]:
    """A service of this machine on 127.0.0.1 (a listening socket: connecting to it succeeds); its port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


REACH = (
    """
import json

import numpy as np
import triton_python_backend_utils as pb_utils
"""
    + NETWORK_PROBE
    + """

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            targets = [item.decode() for item in pb_utils.get_input_tensor_by_name(request, "TARGETS").as_numpy().reshape(-1)]
            out = np.array([json.dumps([target for target in targets if _reached(target)]).encode()], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("REACHED", out)]))
        return responses
"""
)
REACH_CONFIG = """backend: "python"
input [ { name: "TARGETS", data_type: TYPE_STRING, dims: [ -1 ] } ]
output [ { name: "REACHED", data_type: TYPE_STRING, dims: [ 1 ] } ]
"""


def reach_repository(parent: Path) -> Path:
    """A Triton model repository under `parent` holding `reach`, a model that tries the network."""
    return python_model_repository(parent, "reach", REACH, REACH_CONFIG)


def reached(server: Server | str, targets: list[str]) -> list[str]:
    """The targets the loaded `reach` model of a server (or at an HTTP endpoint) got an answer from."""
    client = httpclient.InferenceServerClient(server if isinstance(server, str) else server.endpoints.http)
    try:
        tensor = httpclient.InferInput("TARGETS", [len(targets)], "BYTES")
        tensor.set_data_from_numpy(np.array([target.encode() for target in targets], dtype=np.object_))
        found: list[str] = json.loads(client.infer("reach", [tensor]).as_numpy("REACHED")[0])
        return found
    finally:
        client.close()


S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client for the moto server, with its dummy credentials."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    )


def runtime_client(url: str) -> Any:
    """boto3's sagemaker-runtime client for the endpoint at `url` (no retries: each call is one)."""
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=300),
    )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 API on 127.0.0.1 for the whole test session, answering one request at a time.

    moto's stock threaded server checks a conditional write (If-None-Match: *) and stores the object in
    two steps, so two concurrent creates of one key can both succeed; S3 itself applies them atomically.
    Serializing requests gives moto S3's atomicity, which the concurrent-pusher tests rely on.
    """
    lock = threading.Lock()
    backend = DomainDispatcherApplication(create_backend_app)

    def serialized(environ: Any, start_response: Any) -> Any:
        with lock:
            return list(backend(environ, start_response))

    server = make_server("127.0.0.1", 0, serialized, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, str]:
    """Fresh staging and production buckets, and the environment that points boto3 (and DVC) at them."""
    suffix = str(abs(hash(request.node.nodeid)) % 10**10)
    environment = {**S3_CREDENTIALS, "AWS_ENDPOINT_URL_S3": moto_endpoint}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    client = s3_client(moto_endpoint)
    buckets = {"staging": f"staging-{suffix}", "production": f"production-{suffix}"}
    for bucket in buckets.values():
        client.create_bucket(Bucket=bucket)
    return {
        **environment,
        "PACKAGER_STAGING_URI": f"s3://{buckets['staging']}/models",
        "PACKAGER_PRODUCTION_URI": f"s3://{buckets['production']}/models",
    }


EXAMPLES = Path(__file__).parent.parent


def copy_example(name: str, repo: Path) -> Path:
    """A copy of the example model `name` (weights included) in the monorepo `repo`, with the shared code
    under libs/ that its steps import."""
    ignored = shutil.ignore_patterns("python_env.tar.gz", "__pycache__")
    shutil.copytree(EXAMPLES / "models" / name, repo / "models" / name, ignore=ignored)
    shutil.copytree(EXAMPLES / "libs", repo / "libs", ignore=ignored, dirs_exist_ok=True)
    return repo / "models" / name


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture(scope="session")
def scaffold_lock(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The lock of `packager new`'s requirements for the embedded runtime, made once per session by uv."""
    model = ModelDir(scaffold(tmp_path_factory.mktemp("lock"), "locked"))
    return lock_model(model, DEFAULT_RUNTIME).path.read_text()


def new_model(parent: Path, name: str, lock: str) -> Path:
    """What `packager new` makes, with the session's lock of its requirements."""
    created = scaffold(parent, name)
    (created / LOCK_FILE).write_text(lock)
    return created


@pytest.fixture
def model_repo(tmp_path: Path, scaffold_lock: str) -> Path:
    """A committed git repository with one model, `fraud` (from `packager new`: fast to build and replay),
    checked out on main, with a branch feature/fraud at the same commit."""
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "pants.toml").write_text("")
    (repo / ".gitignore").write_text("dist/\npython_env.tar.gz\n")
    new_model(repo / "models", "fraud", scaffold_lock)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "fraud model")
    git(repo, "branch", "feature/fraud")
    return repo


@pytest.fixture(scope="session")
def container_runtime() -> Runtime:
    """The repository's container runtime, its image built if it is not yet (.ci/run builds it first).
    An engine must answer (DOCKER_HOST; .ci/run starts podman's API service): these tests never skip."""
    runtime = load_config(Path(__file__).parent.parent).runtime("container")
    build_image(runtime)
    return runtime
