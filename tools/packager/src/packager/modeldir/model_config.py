"""Reads a Triton `config.pbtxt` as the `ModelConfig` protobuf that tritonclient ships, with positions."""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from tritonclient.grpc import model_config_pb2

from packager.modeldir.diagnostics import Diagnostic
from packager.modeldir.discovery import version_dirs
from packager.modeldir.textproto_positions import FieldPositions, integer_position

ModelConfig = model_config_pb2.ModelConfig
OUT_OF_RANGE = re.compile(r"Value out of range: (-?[0-9]+)")


@dataclass(frozen=True)
class ParsedConfig:
    """A parsed config.pbtxt and where each of its fields is written."""

    path: Path
    config: model_config_pb2.ModelConfig
    positions: FieldPositions

    def diagnostic(self, rule: str, message: str, *field: str | int) -> Diagnostic:
        """A diagnostic pointing at `field` (a FieldPositions path), or at the file when it is not written."""
        position = self.positions.at(*field) if field else None
        if position is None:
            return Diagnostic(self.path, None, None, message, rule)
        return Diagnostic(self.path, position.line, position.column, message, rule)


class ConfigUnreadable(Exception):
    """config.pbtxt is not UTF-8 text or does not parse as a ModelConfig."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def enum_name(enum: EnumTypeWrapper, number: int) -> str:
    """The name of `number` in one of ModelConfig's enums, or the number itself where the enum defines none
    (protobuf's text format keeps any number written in an enum field)."""
    value = enum.DESCRIPTOR.values_by_number.get(number)
    return value.name if value is not None else str(number)


def read_text(path: Path, rule: str) -> str:
    """The UTF-8 text of `path`; raises ConfigUnreadable naming the line and column of a bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        message = f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8"
        raise ConfigUnreadable(Diagnostic(path, line, column, message, rule)) from None


def read_config(path: Path) -> ParsedConfig:
    """Parse `path` as a ModelConfig; raises ConfigUnreadable with the parser's line and column."""
    text = read_text(path, "config-encoding")
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        line, column = error.GetLine(), error.GetColumn()
        raise ConfigUnreadable(
            Diagnostic(path, line, column, _parse_message(str(error), text, line), "config-parse")
        ) from None
    except ValueError as error:  # an enum given a number past 32 bits: protobuf checks it only on storing it
        raise ConfigUnreadable(_out_of_range(path, text, str(error))) from None
    return ParsedConfig(path, config, FieldPositions(text))


def _out_of_range(path: Path, text: str, message: str) -> Diagnostic:
    """A diagnostic at the number protobuf's "Value out of range: N" is about, where it is found."""
    found = OUT_OF_RANGE.fullmatch(message)
    position = integer_position(text, int(found.group(1))) if found else None
    line, column = (position.line, position.column) if position else (None, None)
    why = f"{found.group(1)} is out of range for an enum (write one of its names)" if found else message
    return Diagnostic(path, line, column, f"does not parse as a Triton ModelConfig: {why}", "config-parse")


def _parse_message(message: str, text: str, line: int | None) -> str:
    """protobuf's ParseError text without the position and echoed source line it starts with."""
    message = re.sub(r"^\d+:\d+ : ", "", message)
    if line is not None and 0 < line <= len(text.splitlines()):
        message = message.removeprefix(f"'{text.splitlines()[line - 1]}': ")
    message = message.replace('"inference.ModelConfig"', "ModelConfig").replace('"inference.', '"')
    return f"does not parse as a Triton ModelConfig: {message}"


ENV_PATH_PARAMETER = "EXECUTION_ENV_PATH"
MODEL_DIRECTORY_VARIABLE = "$$TRITON_MODEL_DIRECTORY/"
# Where a step's EXECUTION_ENV_PATH points when the packager gives it one (adopt, the validator's advice).
ENV_PATH_VALUE = f"{MODEL_DIRECTORY_VARIABLE}python_env.tar.gz"
ENSEMBLE = "ensemble"
PYTHON = "python"
DEFAULT_PYTHON_FILE = "model.py"
# Platforms Triton knows, and the backend each implies.
PLATFORM_BACKENDS = {
    "tensorrt_plan": "tensorrt",
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
}
# Model file names from which Triton infers a backend when neither backend nor platform is set.
FILE_BACKENDS = {
    "model.savedmodel": "tensorflow",
    "model.graphdef": "tensorflow",
    "model.plan": "tensorrt",
    "model.onnx": "onnxruntime",
    "model.xml": "openvino",
    "model.pt": "pytorch",
    "model.py": PYTHON,
}


@dataclass(frozen=True)
class TritonModel:
    """A Triton model directory inside a model directory, with its parsed config (and the config Triton
    completed at load time, where it was asked: see `completion_reason`)."""

    directory: Path
    parsed: ParsedConfig
    completed: model_config_pb2.ModelConfig | None = None

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def config(self) -> model_config_pb2.ModelConfig:
        """The config as its file says it (what validation locates problems in)."""
        return self.parsed.config

    @property
    def loaded_config(self) -> model_config_pb2.ModelConfig:
        """The config Triton loads: the one it completed, where it was asked, else the file's."""
        return self.completed if self.completed is not None else self.config

    @property
    def config_known(self) -> bool:
        """Whether `loaded_config` holds the inputs, outputs and batching Triton serves the model with."""
        return self.completed is not None or self.completion_reason is None

    @cached_property
    def completion_reason(self) -> str | None:
        """Why Triton completes this model's config at load time (auto-complete, on by default), changing
        its inputs, outputs or batching; None when what the file says is what Triton loads."""
        if self.is_ensemble:
            return None
        if self.is_python:
            versions = self.versions()
            files = [versions[number] / self.python_file for number in self.versions_to_load()]
            defining = next((path for path in files if defines_auto_complete(path)), None)
            return f"{defining.name} defines auto_complete_config" if defining is not None else None
        missing = [field for field in ("input", "output") if not getattr(self.config, field)]
        if not missing or not self.backend():  # an unknown backend: validation says Triton cannot load it
            return None
        what = " and ".join(f"{field}s" for field in missing)
        return f"its config declares no {what}: the {self.backend()} backend completes them"

    @property
    def is_ensemble(self) -> bool:
        return bool(self.config.platform == ENSEMBLE)

    def versions(self) -> dict[int, Path]:
        """Version directories by number."""
        return version_dirs(self.directory)

    def versions_to_load(self) -> list[int]:
        """The versions Triton loads under the config's version_policy."""
        available = sorted(self.versions())
        policy = self.config.version_policy
        kind = policy.WhichOneof("policy_choice")
        if kind == "all":
            return available
        if kind == "specific":
            return [version for version in available if version in set(policy.specific.versions)]
        count = policy.latest.num_versions if kind == "latest" else 1
        return available[len(available) - count :] if count > 0 else []

    def backend(self) -> str:
        """The backend Triton uses for this model, as it infers it at load time ("" when it cannot)."""
        config = self.config
        if config.backend or config.platform == ENSEMBLE:
            return str(config.backend)
        if config.platform:
            return PLATFORM_BACKENDS.get(config.platform, "")
        if config.default_model_filename:
            return FILE_BACKENDS.get(config.default_model_filename, "")
        inspected = self.inspected_subdirectory()
        if inspected is not None:
            for file_name, backend in FILE_BACKENDS.items():
                if (inspected / file_name).exists():
                    return backend
        return self.name.partition(".")[2]

    def inspected_subdirectory(self) -> Path | None:
        """The one subdirectory Triton looks into to infer a backend: the first in byte order."""
        subdirectories = sorted(entry.name for entry in self.directory.iterdir() if entry.is_dir())
        return self.directory / subdirectories[0] if subdirectories else None

    @property
    def is_python(self) -> bool:
        return self.backend() == PYTHON

    @property
    def python_file(self) -> str:
        """The file the python backend loads from each version directory."""
        return self.config.default_model_filename or DEFAULT_PYTHON_FILE


def gpu_groups(config: model_config_pb2.ModelConfig) -> list[int]:
    """The indexes of the instance groups that ask for a GPU: kind KIND_GPU, or KIND_AUTO with gpus listed
    (KIND_AUTO alone runs on CPU where there is no GPU)."""
    groups = model_config_pb2.ModelInstanceGroup
    return [
        index
        for index, group in enumerate(config.instance_group)
        if group.kind == groups.KIND_GPU or (group.kind == groups.KIND_AUTO and group.gpus)
    ]


def gpu_diagnostic(model: TritonModel, index: int, message: str) -> Diagnostic:
    """`message` at the kind (or the gpus) of instance group `index` of the model's config."""
    written = model.parsed.positions.at("instance_group", index, "kind", 0)
    field = "kind" if written is not None else "gpus"
    return model.parsed.diagnostic("instance-group", message, "instance_group", index, field, 0)


def defines_auto_complete(path: Path) -> bool:
    """Whether a python model file's TritonPythonModel defines auto_complete_config (read, never run)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return False  # validation reports a model file that is missing or does not compile
    return any(
        isinstance(node, ast.ClassDef)
        and node.name == "TritonPythonModel"
        and any(
            isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "auto_complete_config"
            for item in node.body
        )
        for node in tree.body
    )


def env_path(model: TritonModel) -> Path | None:
    """Where a python step's EXECUTION_ENV_PATH points inside its Triton model directory, if it sets one."""
    parameters = model.config.parameters
    if ENV_PATH_PARAMETER not in parameters:
        return None
    value = str(parameters[ENV_PATH_PARAMETER].string_value)
    return model.directory / value.removeprefix(MODEL_DIRECTORY_VARIABLE)


def top_model(triton_models: Mapping[str, TritonModel]) -> str:
    """The model a request goes to by default: the top-level ensemble, or the only Triton model."""
    used = {
        step.model_name for model in triton_models.values() for step in model.config.ensemble_scheduling.step
    }
    tops = sorted(
        name
        for name, model in triton_models.items()
        if name not in used and (model.is_ensemble or len(triton_models) == 1)
    )
    return tops[0] if tops else sorted(triton_models)[0]


def decoupled_model(name: str, triton_models: Mapping[str, TritonModel]) -> str | None:
    """The model that makes `name` answer a request with a stream of responses: `name` itself when its
    config says `model_transaction_policy { decoupled: true }`, or a step it runs (an ensemble streams what
    a decoupled step sends, and Triton's HTTP /infer refuses it too); None when it answers once."""
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop(0)
        model = triton_models.get(current)
        if model is None or current in seen:
            continue
        seen.add(current)
        if model.config.model_transaction_policy.decoupled:
            return current
        pending.extend(step.model_name for step in model.config.ensemble_scheduling.step)
    return None
