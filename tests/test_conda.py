"""The conda builder, for real: Python from a conda channel (the `local` one, made once from this machine's
CPython: conda-forge is out of reach here) solved and installed by py-rattler, the lock installed by uv,
packed by conda-pack; then loaded by a real Triton with the build interpreter out of sight."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from packager.archives import file_digest
from packager.artifacts import build_artifact
from packager.environments import ensure_environment, find_interpreter, lock_model
from packager.environments.channel import local_channel
from packager.environments.conda import CondaBuilder
from packager.errors import EnvironmentFailure
from packager.modeldir import ModelDir, RequirementsError
from packager.preflight import prepare
from packager.settings import DEFAULT_RUNTIME, Runtime
from packager.triton import launched
from packager.triton.local import LocalLauncher

PROBE = """
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            host = pb_utils.get_input_tensor_by_name(request, "HOST").as_numpy().reshape(-1)[0].decode()
            with open("/proc/self/maps") as maps:
                libpython = sorted({line.split()[-1] for line in maps if "libpython" in line})
            report = {"prefix": sys.prefix, "numpy": np.__file__, "libpython": libpython, "host": os.path.exists(host)}
            out = np.array([json.dumps(report).encode()], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("REPORT", out)]))
        return responses
"""
PROBE_CONFIG = """name: "probe"
backend: "python"
input [ { name: "HOST", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "REPORT", data_type: TYPE_STRING, dims: [ 1 ] } ]
parameters: { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" } }
"""


@pytest.fixture(scope="session")
def conda_runtime() -> Runtime:
    """The default runtime with conda environments from the local channel, made once (then cached)."""
    started = time.monotonic()
    local_channel(find_interpreter("3.11"))
    print(f"local conda channel ready in {time.monotonic() - started:.1f} s")
    return Runtime(
        "conda-local",
        DEFAULT_RUNTIME.triton_version,
        "3.11",
        server_package=DEFAULT_RUNTIME.server_package,
        env_builder="conda",
        channels=("local",),
        constraints=DEFAULT_RUNTIME.constraints,
    )


def _probe_model(path: Path, runtime: Runtime) -> ModelDir:
    (path / "probe" / "1").mkdir(parents=True)
    (path / "model_version.txt").write_text("1\n")
    (path / "requirements.txt").write_text("numpy<2\n")
    (path / "probe" / "config.pbtxt").write_text(PROBE_CONFIG)
    (path / "probe" / "1" / "model.py").write_text(PROBE)
    model = ModelDir(path)
    lock_model(model, runtime)
    return model


def test_a_conda_env_answers_with_the_build_interpreter_out_of_sight(
    conda_runtime: Runtime, tmp_path: Path
) -> None:
    """Its interpreter, its packages and the libpython it maps all come from the unpacked environment:
    the server's sandbox holds no other Python (every step has its own environment, so none is lent)."""
    model = _probe_model(tmp_path / "portable", conda_runtime)
    report, environment = prepare(model, conda_runtime, CondaBuilder(conda_runtime.channels))
    assert environment is not None and environment.portable
    host = find_interpreter("3.11").prefix
    launcher = LocalLauncher.for_runtime(conda_runtime)
    with launched(
        report, environment, launcher=launcher, log_path=tmp_path / "triton.log", env_mode="packed"
    ) as served:
        client = httpclient.InferenceServerClient(served.server.endpoints.http)
        tensor = httpclient.InferInput("HOST", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([str(host).encode()], dtype=np.object_))
        probed = json.loads(client.infer("probe", [tensor]).as_numpy("REPORT")[0])
        client.close()
    prefix = probed["prefix"]
    assert probed["host"] is False, f"{host} must not be visible to the model"
    assert prefix.startswith("/tmp/python_env_"), probed
    assert probed["numpy"].startswith(f"{prefix}/lib/python3.11/site-packages/numpy/"), probed
    assert probed["libpython"] == [f"{prefix}/lib/libpython3.11.so.1.0"], probed


def test_two_empty_caches_give_the_same_env_and_artifact(
    conda_runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Different HOMEs (so other uv, rattler and packager caches, and a channel made twice): the same
    bytes."""
    monkeypatch.setenv("PYENV_ROOT", os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv")))
    for variable in ("PACKAGER_CACHE", "XDG_CACHE_HOME", "UV_CACHE_DIR"):
        monkeypatch.delenv(variable, raising=False)
    model = _probe_model(tmp_path / "portable", conda_runtime)
    digests = []
    for home in ("first", "second"):
        monkeypatch.setenv("HOME", str(tmp_path / home))
        report, environment = prepare(model, conda_runtime, CondaBuilder(conda_runtime.channels))
        assert environment is not None and not environment.cache_hit
        assert environment.directory.is_relative_to(tmp_path / home)
        artifact = build_artifact(
            report, conda_runtime, environment=environment, out_dir=tmp_path / home / "dist"
        )
        digests.append((file_digest(environment.tarball), artifact.sha256))
    assert digests[0] == digests[1]


def test_conda_failures_are_one_clear_line(
    conda_runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PACKAGER_CONDA_CHANNELS", raising=False)  # these runtimes' own channels, please
    model = _probe_model(tmp_path / "m", conda_runtime)
    channel = local_channel(find_interpreter("3.11")).as_uri()
    unsolvable = Runtime("py312", "2.51.0", "3.12", env_builder="conda", channels=(channel,))
    lock_model(model, unsolvable)
    with pytest.raises(EnvironmentFailure, match=rf"solving python 3.12 from {channel} failed: \w+"):
        ensure_environment(model, unsolvable, CondaBuilder(unsolvable.channels))
    missing = Runtime(
        "gone", "2.51.0", "3.11", env_builder="conda", channels=("file:///nonexistent/channel",)
    )
    lock_model(model, missing)
    with pytest.raises(
        EnvironmentFailure, match="solving python 3.11 from file:///nonexistent/channel failed"
    ):
        ensure_environment(model, missing, CondaBuilder(missing.channels))
    lock = model.path / "requirements.lock"
    lock_model(model, conda_runtime)
    lock.write_text(re.sub(r"--hash=sha256:[0-9a-f]{64}", "--hash=sha256:" + "0" * 64, lock.read_text()))
    with pytest.raises(RequirementsError, match="requirements.lock: uv pip install cannot satisfy"):
        ensure_environment(model, conda_runtime, CondaBuilder(conda_runtime.channels))
