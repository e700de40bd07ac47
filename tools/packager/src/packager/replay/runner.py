"""Replay a model's test cases against a running Triton, over HTTP and gRPC, and compare the outputs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from packager.cases import CASES_DIR, Case, CaseError, Tensor, load_cases
from packager.config import Runtime
from packager.discovery import ModelDir
from packager.errors import ExitCode, PackagerError
from packager.model_config import TritonModel
from packager.artifacts import read_manifest, triton_models_in, unpacked
from packager.serving import launched, loaded, prepare, top_model
from packager.triton_runtime import Server

PROTOCOLS = ("http", "grpc")
REQUEST_TIMEOUT = 60.0
MAX_SHOWN = 3


@dataclass(frozen=True)
class CaseResult:
    """One case sent over one protocol: passed, or what differed."""

    model: str
    case: str
    protocol: str
    passed: bool
    seconds: float
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "case": self.case,
            "protocol": self.protocol,
            "passed": self.passed,
            "seconds": round(self.seconds, 4),
            "problems": list(self.problems),
        }


@dataclass
class ModelReplay:
    """Every result for one model directory, or the error that stopped it before any case ran."""

    model: str
    results: list[CaseResult] = field(default_factory=list)
    error: str | None = None
    error_code: ExitCode = ExitCode.OK

    @property
    def passed(self) -> bool:
        return self.error is None and all(result.passed for result in self.results)

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "passed": self.passed,
            "error": self.error,
            "results": [result.to_json() for result in self.results],
        }


def replay_cases(
    model: str, server: Server, cases: list[Case], protocols: tuple[str, ...] = PROTOCOLS
) -> list[CaseResult]:
    """Send every case over every protocol to `server`, one request at a time."""
    senders: dict[str, _HttpSender | _GrpcSender] = {"http": _HttpSender(server), "grpc": _GrpcSender(server)}
    try:
        return [_run(model, case, protocol, senders[protocol]) for case in cases for protocol in protocols]
    finally:
        for sender in senders.values():
            sender.close()


def _run(model: str, case: Case, protocol: str, send: Callable[[Case], dict[str, np.ndarray]]) -> CaseResult:
    started = time.perf_counter()
    try:
        outputs = send(case)
    except InferenceServerException as error:
        return CaseResult(
            model,
            case.id,
            protocol,
            False,
            time.perf_counter() - started,
            (f"request failed: {error.message()}",),
        )
    except Exception as error:  # a dropped connection or a crashed server, in whichever client's words
        reason = f"request failed: {type(error).__name__}: {error}"
        return CaseResult(model, case.id, protocol, False, time.perf_counter() - started, (reason,))
    seconds = time.perf_counter() - started
    problems = tuple(
        problem for expected in case.outputs for problem in compare(expected, outputs.get(expected.name))
    )
    return CaseResult(model, case.id, protocol, not problems, seconds, problems)


def compare(expected: Tensor, got: np.ndarray | None) -> list[str]:
    """What is wrong with `got` as the output `expected` describes (nothing when it matches)."""
    name = expected.name
    if got is None:
        return [f"{name}: missing from the response"]
    if list(got.shape) != expected.shape:
        return [f"{name}: expected shape {expected.shape}, got {list(got.shape)} ({_show(got)})"]
    if expected.datatype == "BYTES":
        wrong = np.array([bytes(a) != bytes(b) for a, b in zip(expected.data.reshape(-1), got.reshape(-1))])
    else:
        want, have = expected.data.astype(np.float64), got.astype(np.float64)
        tolerance = expected.tolerance
        wrong = ~np.isclose(
            have, want, atol=tolerance.absolute, rtol=tolerance.relative, equal_nan=True
        ).reshape(-1)
    if not wrong.any():
        return []
    indexes = np.flatnonzero(wrong)
    shown = [_difference(expected, got, int(index)) for index in indexes[:MAX_SHOWN]]
    more = f" and {len(indexes) - MAX_SHOWN} more" if len(indexes) > MAX_SHOWN else ""
    return [f"{name}: {len(indexes)} of {wrong.size} values differ: " + "; ".join(shown) + more]


def _difference(expected: Tensor, got: np.ndarray, flat_index: int) -> str:
    position = [int(index) for index in np.unravel_index(flat_index, got.shape)]
    want, have = expected.data.reshape(-1)[flat_index], got.reshape(-1)[flat_index]
    if expected.datatype == "BYTES":
        return f"{position} expected {bytes(want)!r}, got {bytes(have)!r}"
    tolerance = f" {expected.tolerance}" if expected.tolerance.absolute or expected.tolerance.relative else ""
    return f"{position} expected {str(want)}{tolerance}, got {str(have)}"  # str: numpy's shortest repr


def _show(array: np.ndarray) -> str:
    text = np.array2string(array.reshape(-1)[:6], separator=", ")
    return text if array.size <= 6 else text[:-1] + ", ...]"


class _HttpSender:
    def __init__(self, server: Server) -> None:
        self.client = httpclient.InferenceServerClient(
            server.endpoints.http, connection_timeout=REQUEST_TIMEOUT, network_timeout=REQUEST_TIMEOUT
        )

    def __call__(self, case: Case) -> dict[str, np.ndarray]:
        inputs = []
        for tensor in case.inputs:
            item = httpclient.InferInput(tensor.name, tensor.shape, tensor.datatype)
            item.set_data_from_numpy(tensor.data, binary_data=True)
            inputs.append(item)
        outputs = [httpclient.InferRequestedOutput(tensor.name, binary_data=True) for tensor in case.outputs]
        result = self.client.infer(case.model, inputs, outputs=outputs)
        return _collect(result, case)

    def close(self) -> None:
        self.client.close()


class _GrpcSender:
    def __init__(self, server: Server) -> None:
        self.client = grpcclient.InferenceServerClient(server.endpoints.grpc)

    def __call__(self, case: Case) -> dict[str, np.ndarray]:
        inputs = []
        for tensor in case.inputs:
            item = grpcclient.InferInput(tensor.name, tensor.shape, tensor.datatype)
            item.set_data_from_numpy(tensor.data)
            inputs.append(item)
        outputs = [grpcclient.InferRequestedOutput(tensor.name) for tensor in case.outputs]
        result = self.client.infer(case.model, inputs, outputs=outputs, client_timeout=REQUEST_TIMEOUT)
        return _collect(result, case)

    def close(self) -> None:
        self.client.close()


def _collect(result: Any, case: Case) -> dict[str, np.ndarray]:
    collected = {}
    for tensor in case.outputs:
        value = result.as_numpy(tensor.name)
        if value is not None:
            collected[tensor.name] = value
    return collected


def replay_model(
    model: ModelDir,
    runtime: Runtime,
    log_path: Path,
    env_mode: str = "unpacked",
    protocols: tuple[str, ...] = PROTOCOLS,
    progress: bool = True,
) -> ModelReplay:
    """Validate, build the environment, start Triton, load, and replay every case of one model directory."""
    replay = ModelReplay(model.name)
    with _recorded(replay):
        report, environment = prepare(model, runtime, progress)
        cases = _cases(model, report.triton_models, top_model(report.triton_models))
        with launched(report, environment, runtime, log_path, env_mode, progress=progress) as served:
            replay.results = replay_cases(model.name, served.server, cases, protocols)
    return replay


def replay_artifact(
    archive: Path,
    model: ModelDir,
    runtime: Runtime,
    log_path: Path,
    protocols: tuple[str, ...] = PROTOCOLS,
    progress: bool = True,
) -> ModelReplay:
    """Replay a model directory's cases against exactly what an artifact holds (safely unpacked; the
    environments are the packed tarballs inside it, as an endpoint receives them)."""
    replay = ModelReplay(model.name)
    with _recorded(replay):
        manifest, _, _ = read_manifest(archive)
        with unpacked(archive) as repository:
            triton_models = triton_models_in(repository)
            cases = _cases(model, triton_models, str(manifest["top_model"]))
            with loaded(repository, triton_models, runtime, log_path, progress=progress) as server:
                replay.results = replay_cases(model.name, server, cases, protocols)
    return replay


def _cases(model: ModelDir, triton_models: dict[str, TritonModel], top: str) -> list[Case]:
    cases = load_cases(model.path, triton_models, top)
    if not cases:
        raise NoCases(
            f"{model.path / CASES_DIR}: no test cases (*.json); a model ships only with cases that pass"
        )
    return cases


@contextmanager
def _recorded(replay: ModelReplay) -> Iterator[None]:
    """An expected failure becomes the replay's error (with its exit code) instead of propagating."""
    try:
        yield
    except CaseError as error:
        replay.error, replay.error_code = str(error), ExitCode.MODEL_ERROR
    except PackagerError as error:
        replay.error, replay.error_code = str(error), error.exit_code


class NoCases(PackagerError):
    """A model directory without test cases cannot be replayed."""
