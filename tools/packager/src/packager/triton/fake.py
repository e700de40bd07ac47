"""A launcher of fake Triton servers, for tests: in this process, with no Triton, no subprocess and no
sandbox, answering the KServe v2 protocol on loopback as far as the packager uses it.

A `FakeServer` starts on a model repository (and exits at once, as Triton does, where it is not there).
Under explicit model control it loads a model by reading its config.pbtxt (an ensemble loads its steps
first), and answers inference for a loaded model over HTTP (JSON and binary tensors) and gRPC (see
`fake_fronts`) with the model's `Behaviour`, a function of its inputs standing in for its code (default
`zeros`: outputs of zeros shaped by the config; `from_cases`: a case's expected outputs for its inputs),
after checking the inputs' names and datatypes against the config. Its `FakeLauncher` can be told to refuse
a model's load with Triton's message, hang it (bounded by the caller's timeout), slow it, or crash the
server on it; `FakeServer.die` is a server killed while it serves. It logs what it did; errors quote it.

What it does not emulate: model code (the behaviour stands in for it), Triton's config checks and
auto-complete (a config is taken as written; a model without one is refused), an ensemble's scheduling
(it answers with its own behaviour; its steps are only loaded), decoupled models and streams (HTTP
/infer answers 501, gRPC streaming is unimplemented), generate, metrics (nothing listens on that port),
shared memory, batching, instance groups, environments (EXECUTION_ENV_PATH is never unpacked) and
`lend_interpreter`; a load its caller stopped waiting for never completes. Its messages are its own, in
Triton's words where the packager reads them. Its configs are not Triton's completions: give a process that
uses it with a completer a cache of its own (PACKAGER_CACHE).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import triton_to_np_dtype

from packager.modeldir import TRITON_CONFIG, Case, ConfigUnreadable, TritonModel, kserve_datatype, read_config
from packager.triton.fake_fronts import Fronts, InferError, datatype_of
from packager.triton.launcher import (
    LOAD_TIMEOUT,
    READY_TIMEOUT,
    Endpoints,
    Ports,
    excerpt,
    exited_while_starting,
    listening_ports,
    load_hung,
    load_refused,
    no_config,
    stopped_answering,
)

# A model's answer to one request: its outputs by name, from its inputs by name.
Behaviour = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
GONE = "[Errno 111] Connection refused"  # what a client of a server that is not running is told


def zeros_of(datatype: str, shape: list[int]) -> np.ndarray:
    """A tensor of zeros (empty bytes for BYTES)."""
    if datatype == "BYTES":
        return np.full(shape, b"", dtype=np.object_)
    return np.zeros(shape, triton_to_np_dtype(datatype) or np.float32)


def zeros(config: model_config_pb2.ModelConfig) -> Behaviour:
    """Every output of `config` as zeros: a variable dim is 1, and a batching model's batch is its first
    input's."""

    def answer(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        first = next(iter(inputs.values()), None)
        batch = [first.shape[0]] if config.max_batch_size > 0 and first is not None and first.ndim else []
        return {
            spec.name: zeros_of(
                kserve_datatype(spec.data_type), batch + [max(1, int(dim)) for dim in spec.dims]
            )
            for spec in config.output
        }

    return answer


def from_cases(cases: Iterable[Case]) -> Behaviour:
    """The expected outputs of the case whose inputs these are (a request no case makes fails, as a model
    that raises does)."""
    known = [(case.inputs, case.outputs) for case in cases if case.stream is None]

    def answer(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        for given, outputs in known:
            if {tensor.name for tensor in given} == set(inputs) and all(
                np.array_equal(inputs[tensor.name], tensor.data) for tensor in given
            ):
                return {tensor.name: tensor.data for tensor in outputs}
        raise ValueError("no case sends these inputs")

    return answer


class _Refused(Exception):
    """Triton's reason for refusing a load."""


class _Hung(Exception):
    """The load did not finish within its timeout."""


class _Gone(Exception):
    """The server stopped during the load."""


class FakeLauncher:
    """Starts `FakeServer`s (listed in `servers`). `behaviours`: how each model answers, by name (default
    `zeros`). What it is told to do to a model's load, by name, applies to every server, from the next load:
    `refuse` (with Triton's message), `hang`, `slow` (seconds), `crash` (the server dies)."""

    name = "fake"
    unpacked_envs = True

    def __init__(
        self,
        behaviours: Mapping[str, Behaviour] | None = None,
        backends: frozenset[str] = frozenset({"python", "onnxruntime"}),
        gpu_as_cpu: bool = False,
    ) -> None:
        self.behaviours = dict(behaviours or {})
        self.backends = backends
        self.gpu_as_cpu = gpu_as_cpu
        self.refuse: dict[str, str] = {}
        self.hang: set[str] = set()
        self.slow: dict[str, float] = {}
        self.crash: set[str] = set()
        self.servers: list[FakeServer] = []

    @contextmanager
    def start(
        self, repository: Path, log_path: Path, *, lend_interpreter: bool = True, ports: Ports = Ports()
    ) -> Iterator[FakeServer]:
        server = FakeServer(self, repository, log_path=log_path, ports=ports)
        self.servers.append(server)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


class FakeServer:
    """A server in this process on `repository` (see the module's docstring): `loads` lists each load asked
    of it, with its timeout; `ready`, the models loaded now."""

    def __init__(self, launcher: FakeLauncher, repository: Path, *, log_path: Path, ports: Ports) -> None:
        self.launcher = launcher
        self.repository = repository
        self.log_path = log_path
        self.loads: list[tuple[str, float]] = []
        self.ready: dict[str, TritonModel] = {}
        self.exit_status: int | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        http, grpc, metrics = listening_ports(ports)
        self.endpoints = Endpoints(f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", f"127.0.0.1:{metrics}")
        log_path.write_text(f"I fake server on model repository {repository}\n")
        self._fronts: Fronts | None = None
        if not repository.is_dir():
            self._exit(1, f"error: creating server: Internal - failed to stat file {repository}")
            return
        self._fronts = Fronts(self, http, grpc)
        self._log("I Started HTTPService and GRPCInferenceService (fake)")

    def alive(self) -> bool:
        return self.exit_status is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        if not self.alive():
            raise exited_while_starting(self.exit_status, self.log_excerpt())

    def log_excerpt(self, lines: int = 30) -> str:
        return excerpt(self.log_path, lines)

    def is_ready(self, model: str) -> bool:
        return model in self.ready

    def load(self, model: str, timeout: float = LOAD_TIMEOUT) -> None:
        """Load `model` (an ensemble's steps first), as the launcher says each load goes."""
        self.loads.append((model, timeout))
        if not self.alive():
            raise stopped_answering(f"while loading {model!r}", GONE, self.log_excerpt())
        try:
            self._load(model, time.monotonic() + timeout)
        except _Refused as refused:
            self._log(f"E failed to load '{model}': {refused}")
            raise load_refused(model, str(refused), self.log_excerpt()) from None
        except _Hung:
            raise load_hung(model, timeout, self.log_excerpt()) from None
        except _Gone:
            reason = "Connection reset by peer"
            raise stopped_answering(f"while loading {model!r}", reason, self.log_excerpt()) from None

    def unload(self, model: str, timeout: float = LOAD_TIMEOUT) -> None:
        if not self.alive():
            raise stopped_answering(f"while unloading {model!r}", GONE)
        with self._lock:
            unloaded = self.ready.pop(model, None)
        if unloaded is not None:
            self._log(f"I successfully unloaded '{model}' version 1")

    def model_config(self, model: str, timeout: float = READY_TIMEOUT) -> dict[str, object]:
        """The config as its file says it (the fake completes nothing), with its name."""
        if not self.alive():
            raise stopped_answering(f"when asked for {model!r}'s config", GONE)
        loaded = self.ready.get(model)
        if loaded is None:
            raise no_config(model, f"Request for unknown model: '{model}' is not found")
        config = model_config_pb2.ModelConfig()
        config.CopyFrom(loaded.config)
        config.name = config.name or model
        return dict(json_format.MessageToDict(config, preserving_proto_field_name=True))

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], outputs: list[str]
    ) -> dict[str, np.ndarray]:
        """What `model` answers `inputs` with: the `outputs` named (all, where none is), or InferError."""
        loaded = self.ready.get(model)
        if loaded is None:
            raise InferError(400, f"Request for unknown model: '{model}' is not found")
        config = loaded.config
        if config.model_transaction_policy.decoupled:
            raise InferError(501, "HTTP end point doesn't support models with decoupled transaction policy")
        _check_inputs(model, config, inputs)
        behaviour = self.launcher.behaviours.get(model) or zeros(config)
        try:
            answered = dict(behaviour(inputs))
        except Exception as error:  # what a model's code raising is answered with
            raise InferError(500, f"{type(error).__name__}: {error}") from None
        wanted = outputs or list(answered)
        declared = {spec.name for spec in config.output}
        for name in wanted:
            if name not in declared:
                raise InferError(400, f"unexpected inference output '{name}' for model '{model}'")
            if name not in answered:
                raise InferError(500, f"the model did not produce output '{name}'")
        return {name: np.asarray(answered[name]) for name in wanted}

    def die(self) -> None:
        """End as a killed server does: connections refused from now on, a load in progress cut off."""
        self._exit(-9, "(killed)")

    def stop(self) -> None:
        """Shut down (what leaving its launcher's block does); idempotent."""
        self._exit(0, "I exiting (fake)")

    def _exit(self, status: int, line: str) -> None:
        with self._lock:
            if self.exit_status is not None:
                return
            self.exit_status = status
        self._log(line)
        self._stopped.set()
        if self._fronts is not None:
            self._fronts.close()

    def _log(self, line: str) -> None:
        with self._lock, self.log_path.open("a") as log:
            log.write(line + "\n")

    def _load(self, name: str, deadline: float) -> None:
        model = self._model(name)
        for step in model.config.ensemble_scheduling.step:
            self._load(step.model_name, deadline)
        self._fault(name, deadline)
        with self._lock:
            self.ready[name] = model
        self._log(f"I successfully loaded '{name}' version 1")

    def _model(self, name: str) -> TritonModel:
        """The model's directory in the repository, with its config as written."""
        directory = self.repository / name
        if not directory.is_dir():
            raise _Refused(f"failed to load '{name}', failed to poll from model repository")
        if not (directory / TRITON_CONFIG).is_file():
            raise _Refused(f"the fake server completes no config: {directory / TRITON_CONFIG} is missing")
        try:
            model = TritonModel(directory, read_config(directory / TRITON_CONFIG))
        except ConfigUnreadable as error:
            raise _Refused(str(error)) from None
        if not model.is_ensemble and model.backend() not in self.launcher.backends:
            raise _Refused(f"unable to find backend library for backend '{model.backend()}'")
        return model

    def _fault(self, name: str, deadline: float) -> None:
        """What the launcher says this load does: crash the server, refuse, hang or take its time."""
        launcher = self.launcher
        if name in launcher.crash:
            self.die()
            raise _Gone
        if name in launcher.refuse:
            raise _Refused(launcher.refuse[name])
        takes = math.inf if name in launcher.hang else launcher.slow.get(name, 0.0)
        left = max(0.0, deadline - time.monotonic())
        if takes and self._stopped.wait(min(takes, left)):
            raise _Gone
        if takes > left:
            raise _Hung


def _check_inputs(model: str, config: model_config_pb2.ModelConfig, inputs: Mapping[str, np.ndarray]) -> None:
    """Refuse (400) an input the config does not declare or gives another datatype, and a missing one."""
    declared = {spec.name: kserve_datatype(spec.data_type) for spec in config.input}
    for name, array in inputs.items():
        if name not in declared:
            raise InferError(400, f"unexpected inference input '{name}' for model '{model}'")
        if datatype_of(array) != declared[name]:
            raise InferError(
                400,
                f"inference input '{name}' data-type is '{datatype_of(array)}', but model '{model}' "
                f"expects '{declared[name]}'",
            )
    missing = [spec.name for spec in config.input if not spec.optional and spec.name not in inputs]
    if missing:
        raise InferError(400, f"expected input(s) {missing} for model '{model}', which the request lacks")
