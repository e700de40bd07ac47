"""Model code is untrusted: a probe model inside a real Triton (local launcher, sandboxed) looks for the
publishing credentials and the signing key everywhere it could, and tries the network (a service of this
machine on loopback, the cloud's metadata address, DNS), and finds nothing."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from packager.settings import DEFAULT_RUNTIME
from packager.triton import Server, free_ports
from packager.triton.local import LocalLauncher
from packager.triton.sandbox import ALLOWED_VARIABLES, HOME, Sandbox, allowed_environment
from tests.conftest import (
    NETWORK_PROBE,
    RunPackager,
    git,
    network_targets,
    reach_repository,
    reached,
    serve_banner,
    start_packager,
)

PROBE = (
    """
import glob
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
"""
    + NETWORK_PROBE
    + """


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode(errors="replace")
    except OSError as error:
        return None


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            paths = [item.decode() for item in pb_utils.get_input_tensor_by_name(request, "PATHS").as_numpy().reshape(-1)]
            report = {
                "environment": dict(os.environ),
                "readable": {path: text for path in paths if ":" not in path and (text := _read(path)) is not None},
                "reached": [path for path in paths if ":" in path and _reached(path)],
                "process_environments": [_read(path) for path in glob.glob("/proc/*/environ")],
                "processes": sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit()),
                "tmp": sorted(os.listdir("/tmp")),
            }
            out = np.array([json.dumps(report).encode()], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("REPORT", out)]))
        return responses
"""
)
PROBE_CONFIG = """backend: "python"
input [ { name: "PATHS", data_type: TYPE_STRING, dims: [ -1 ] } ]
output [ { name: "REPORT", data_type: TYPE_STRING, dims: [ 1 ] } ]
"""


@pytest.fixture(scope="module")
def launcher() -> LocalLauncher:
    return LocalLauncher.for_runtime(DEFAULT_RUNTIME)


@pytest.fixture
def secret_places(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A secret written where a model could look: beside the test (the signing key), in the home
    directory, and in the current directory (the checkout)."""
    token = uuid.uuid4().hex
    places = {
        "signing key": tmp_path / "keys" / "release.key",
        "home": Path.home() / f".packager-probe-{token}",
        "checkout": Path.cwd() / f".packager-probe-{token}",
        "host tmp": Path("/tmp") / f"packager-probe-{token}",
    }
    for path in places.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"SECRET {token}\n")
    yield places
    for path in places.values():
        path.unlink(missing_ok=True)


def _probe(server: Server, paths: list[str]) -> dict[str, Any]:
    client = httpclient.InferenceServerClient(server.endpoints.http)
    try:
        tensor = httpclient.InferInput("PATHS", [len(paths)], "BYTES")
        tensor.set_data_from_numpy(np.array([path.encode() for path in paths], dtype=np.object_))
        report: dict[str, Any] = json.loads(client.infer("probe", [tensor]).as_numpy("REPORT")[0])
        return report
    finally:
        client.close()


def test_model_code_finds_no_credentials_keys_home_or_checkout(
    launcher: LocalLauncher,
    tmp_path: Path,
    secret_places: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    loopback_service: int,
) -> None:
    secret = secret_places["home"].read_text().split()[1]
    credentials = {
        "AWS_ACCESS_KEY_ID": f"AKIA{secret}",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_SESSION_TOKEN": secret,
        "AWS_ENDPOINT_URL": f"http://{secret}.example",
        "PACKAGER_SIGNING_KEY": str(secret_places["signing key"]),
        "GITHUB_TOKEN": secret,
    }
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "repo" / "probe" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "probe" / "1" / "model.py").write_text(PROBE)
    (tmp_path / "repo" / "probe" / "config.pbtxt").write_text(PROBE_CONFIG)
    own_model = tmp_path / "repo" / "probe" / "1" / "model.py"
    looked_at = [str(path) for path in secret_places.values()]
    looked_at += [str(own_model), f"/proc/{os.getpid()}/environ", str(Path.home() / ".aws" / "credentials")]
    looked_at += network_targets(loopback_service)
    with launcher.start(tmp_path / "repo", tmp_path / "triton.log") as server:
        server.load("probe")
        report = _probe(server, looked_at)
    assert list(report["readable"]) == [str(own_model)], "the probe reads what it may, and only that"
    assert report["reached"] == [], "no service of this machine, no metadata address, no DNS"
    assert secret not in json.dumps(report), "no credential, key or secret file reached the model"
    assert set(report["environment"]) <= {
        *ALLOWED_VARIABLES,
        "LD_LIBRARY_PATH",
        "HOME",
        "PWD",
        "SHLVL",
        "_",
    } | {name for name in report["environment"] if name.startswith("LC_")}
    assert report["environment"]["HOME"] == HOME
    assert os.getpid() not in report["processes"], "the packager's processes are out of sight"
    assert secret_places["host tmp"].name not in report["tmp"], "the host's /tmp is out of sight"


def test_a_runtime_that_allows_the_network_shares_it(
    tmp_path: Path, loopback_service: int, launcher: LocalLauncher
) -> None:
    """`network = true` is honoured: a model then reaches this machine's loopback service (which also
    shows that the probe sees what the sandbox hides)."""
    networked = LocalLauncher(launcher.install, network=True)
    with networked.start(reach_repository(tmp_path), tmp_path / "triton.log") as server:
        server.load("reach")
        assert reached(server, [f"tcp:127.0.0.1:{loopback_service}"]) == [f"tcp:127.0.0.1:{loopback_service}"]


def test_a_served_model_reaches_no_network(tmp_path: Path, loopback_service: int) -> None:
    """`packager serve`, as a data scientist runs it: the model reaches nothing, the curl it prints works."""
    (tmp_path / "pants.toml").write_text("")
    model = tmp_path / "models" / "reach"
    reach_repository(tmp_path / "models")
    (tmp_path / "models" / "repo").rename(model)
    (model / "model_version.txt").write_text("1\n")
    (free,) = free_ports(1)
    process = start_packager("serve", "reach", "--http-port", str(free), cwd=tmp_path)
    try:
        lines = serve_banner(process)
        assert f"  HTTP     http://127.0.0.1:{free}/v2/models/reach\n" in lines, "".join(lines)
        assert reached(f"127.0.0.1:{free}", network_targets(loopback_service)) == []
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def test_the_environment_allow_list() -> None:
    given = {"PATH": "/bin", "LC_ALL": "C.UTF-8", "AWS_SECRET_ACCESS_KEY": "x", "PACKAGER_SIGNING_KEY": "k"}
    assert allowed_environment(given) == {"PATH": "/bin", "LC_ALL": "C.UTF-8"}
    command = Sandbox(readable=(Path("/srv/models"),), environment={"PATH": "/bin"}).command(["tritonserver"])
    assert command[-2:] == ["--", "tritonserver"]
    assert "--clearenv" in command and ["--cap-drop", "ALL"] == command[command.index("--cap-drop") :][:2]
    assert ["--ro-bind", "/srv/models", "/srv/models"] == command[command.index("/srv/models") - 1 :][:3]


LEAK_PROBE = (
    """
import glob
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
"""
    + NETWORK_PROBE
    + """

SECRET_WORDS = ("AWS", "SECRET", "TOKEN", "KEY", "PASSWORD", "CREDENTIAL")


def _readable(path):
    try:
        with open(path, "rb") as handle:
            return bool(handle.read(1))
    except OSError:
        return False


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            paths = [item.decode() for item in pb_utils.get_input_tensor_by_name(request, "PATHS").as_numpy().reshape(-1)]
            leaks = [name for name in os.environ if any(word in name.upper() for word in SECRET_WORDS)]
            leaks += [path for path in paths if ":" not in path and _readable(path)]
            leaks += [path for path in paths if ":" in path and _reached(path)]
            for environ in glob.glob("/proc/*/environ"):
                try:
                    text = open(environ, "rb").read().decode(errors="replace")
                except OSError:
                    continue
                if "AWS_SECRET_ACCESS_KEY" in text or "PACKAGER_SIGNING_KEY" in text:
                    leaks.append(environ)
            out = np.array([json.dumps(sorted(leaks)).encode()], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("LEAKS", out)]))
        return responses
"""
)
LEAK_PROBE_CONFIG = """name: "probe"
backend: "python"
input [ { name: "PATHS", data_type: TYPE_STRING, dims: [ -1 ] } ]
output [ { name: "LEAKS", data_type: TYPE_STRING, dims: [ 1 ] } ]
"""


def test_a_branch_model_finds_nothing_during_a_push_with_credentials_and_a_signing_key(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str], tmp_path: Path
) -> None:
    """The attack: a branch's model.py reading the publishing credentials and the signing key, or reaching
    the S3 service the push publishes to, the metadata address or DNS, during a `packager push`. The
    probe's case expects no leak, so the push passes only if it found none."""
    keys = tmp_path / "keys"
    assert (
        run_packager(
            "keygen",
            "--private",
            str(keys / "release.key"),
            "--public",
            str(keys / "release.pub"),
            cwd=model_repo,
        ).returncode
        == 0
    )
    model = model_repo / "models" / "probe"
    (model / "probe" / "1").mkdir(parents=True)
    (model / "model_version.txt").write_text("1\n")
    (model / "probe" / "config.pbtxt").write_text(LEAK_PROBE_CONFIG)
    (model / "probe" / "1" / "model.py").write_text(LEAK_PROBE)
    (model / "tests" / "cases").mkdir(parents=True)
    secrets = [
        str(keys / "release.key"),
        str(Path.home() / ".aws" / "credentials"),
        str(model_repo / ".gitignore"),
        *network_targets(int(s3["AWS_ENDPOINT_URL_S3"].rsplit(":", 1)[1])),
    ]
    case = {
        "inputs": [{"name": "PATHS", "datatype": "BYTES", "shape": [len(secrets)], "data": secrets}],
        "outputs": [{"name": "LEAKS", "datatype": "BYTES", "shape": [1], "data": ["[]"]}],
    }
    (model / "tests" / "cases" / "nothing_leaks.json").write_text(json.dumps(case))
    git(model_repo, "add", "-A")
    git(model_repo, "commit", "-qm", "a model that looks for secrets")
    environment = {
        **s3,
        "AWS_SESSION_TOKEN": "session-secret",
        "PACKAGER_SIGNING_KEY": str(keys / "release.key"),
    }
    pushed = run_packager(
        "push", "probe", "--branch", "feature/probe", "--json", cwd=model_repo, env=environment
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    report = json.loads(pushed.stdout)["models"][0]
    assert report["outcome"] == "uploaded" and report["replay"]["passed"] is True
