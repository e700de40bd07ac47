"""The fakes themselves: the fake server answers tritonclient's HTTP (JSON and binary tensors) and gRPC
requests as Triton does, BYTES included, and refuses what Triton refuses with its status; FakeEnvBuilder
builds the same environment from the same lock, and the runtime's constraints still hold. (What every
launcher, the fake included, must do is in test_launchers.py.)"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from packager.environments import ensure_environment
from packager.environments.fake import FakeEnvBuilder, fake_lock
from packager.modeldir import LOCK_FILE, ModelDir, RequirementsError, scaffold
from packager.settings import DEFAULT_RUNTIME
from packager.triton.fake import FakeLauncher, FakeServer
from tests.conftest import python_model_repository

ECHO_CONFIG = """backend: "python"
max_batch_size: 4
input [ { name: "TEXT", data_type: TYPE_STRING, dims: [ 2 ] }, { name: "N", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "UPPER", data_type: TYPE_STRING, dims: [ 2 ] }, { name: "TWICE", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""
TEXT = np.array([[b"a\x00b", "é".encode()]], dtype=np.object_)
N = np.array([[21]], dtype=np.int32)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeServer]:
    """A fake server with `echo` loaded: it upper-cases TEXT and doubles N."""
    repository = python_model_repository(tmp_path, "echo", "", ECHO_CONFIG)
    echo = FakeLauncher(
        {
            "echo": lambda inputs: {
                "UPPER": np.vectorize(bytes.upper, otypes=[object])(inputs["TEXT"]),
                "TWICE": inputs["N"] * 2,
            }
        }
    )
    with echo.start(repository, tmp_path / "triton.log") as started:
        started.load("echo")
        yield started


def test_http_carries_binary_and_json_tensors(server: FakeServer) -> None:
    client = httpclient.InferenceServerClient(server.endpoints.http)
    try:
        for binary in (True, False):
            text, n = httpclient.InferInput("TEXT", [1, 2], "BYTES"), httpclient.InferInput(
                "N", [1, 1], "INT32"
            )
            text.set_data_from_numpy(TEXT if binary else np.array([[b"ab", b"cd"]], dtype=np.object_), binary)
            n.set_data_from_numpy(N, binary)
            outputs = [
                httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("UPPER", "TWICE")
            ]
            result = client.infer("echo", [text, n], outputs=outputs)
            upper = [[b"A\x00B", "é".encode()]] if binary else [["AB", "CD"]]  # JSON carries text
            assert result.as_numpy("UPPER").tolist() == upper and result.as_numpy("TWICE").tolist() == [[42]]
    finally:
        client.close()


def test_grpc_carries_raw_tensors(server: FakeServer) -> None:
    client = grpcclient.InferenceServerClient(server.endpoints.grpc)
    try:
        text, n = grpcclient.InferInput("TEXT", [1, 2], "BYTES"), grpcclient.InferInput("N", [1, 1], "INT32")
        text.set_data_from_numpy(TEXT)
        n.set_data_from_numpy(N)
        result = client.infer("echo", [text, n])
        assert result.as_numpy("UPPER").tolist() == [[b"A\x00B", "é".encode()]]
        assert result.as_numpy("TWICE").tolist() == [[42]]
        assert client.is_model_ready("echo") and not client.is_model_ready("other")
    finally:
        client.close()


@pytest.mark.parametrize(
    ("model", "inputs", "status", "message"),
    [
        ("other", [("N", "INT32", [21])], 400, "Request for unknown model: 'other' is not found"),
        ("echo", [("N", "INT32", [21]), ("WRONG", "INT32", [1])], 400, "unexpected inference input 'WRONG'"),
        (
            "echo",
            [("N", "FP32", [21.0]), ("TEXT", "BYTES", ["a", "b"])],
            400,
            "data-type is 'FP32', but model",
        ),
        ("echo", [("N", "INT32", [21])], 400, "expected input(s) ['TEXT'] for model 'echo'"),
    ],
)
def test_what_triton_refuses_is_refused_with_its_status(
    server: FakeServer, model: str, inputs: list[tuple[str, str, list[object]]], status: int, message: str
) -> None:
    body = {
        "inputs": [
            {"name": name, "datatype": kind, "shape": [1, len(data)], "data": data}
            for name, kind, data in inputs
        ]
    }
    request = urllib.request.Request(
        f"http://{server.endpoints.http}/v2/models/{model}/infer", json.dumps(body).encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10)
    assert refused.value.code == status and message in json.loads(refused.value.read())["error"]
    client = grpcclient.InferenceServerClient(server.endpoints.grpc)
    try:
        tensors = []
        for name, kind, data in inputs:
            tensor = grpcclient.InferInput(name, [1, len(data)], kind)
            tensor.set_data_from_numpy(
                np.array(
                    [data],
                    dtype=np.object_ if kind == "BYTES" else {"INT32": np.int32, "FP32": np.float32}[kind],
                )
            )
            tensors.append(tensor)
        with pytest.raises(InferenceServerException, match=re.escape(message)):
            client.infer(model, tensors)
    finally:
        client.close()


def test_the_fake_env_builder_builds_the_same_environment_from_the_same_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ModelDir(scaffold(tmp_path, "fraud"))
    (model.path / LOCK_FILE).write_text(fake_lock(model.path, DEFAULT_RUNTIME, {"numpy": "1.26.4"}))
    tarballs = []
    for cache in ("one", "two"):
        monkeypatch.setenv("PACKAGER_CACHE", str(tmp_path / cache))
        environment = ensure_environment(model, DEFAULT_RUNTIME, FakeEnvBuilder())
        assert environment.metadata()["packages"] == {"numpy": "1.26.4"} and environment.portable
        tarballs.append(environment.tarball.read_bytes())
    assert tarballs[0] == tarballs[1]
    (model.path / LOCK_FILE).write_text(fake_lock(model.path, DEFAULT_RUNTIME, {"numpy": "2.0.0"}))
    with pytest.raises(
        RequirementsError, match="the environment got numpy 2.0.0, which breaks runtime 'local'"
    ):
        ensure_environment(model, DEFAULT_RUNTIME, FakeEnvBuilder())
