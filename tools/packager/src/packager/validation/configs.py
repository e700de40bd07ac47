"""Rules on one Triton model's config.pbtxt (and a python step's model file) that Triton would otherwise
refuse at load time."""

from __future__ import annotations

import ast
import math
import posixpath
from collections.abc import Iterator, Sequence
from pathlib import Path

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2 as pb

from packager.modeldir import (
    ENSEMBLE,
    ENV_PATH_PARAMETER,
    MODEL_DIRECTORY_VARIABLE,
    PLATFORM_BACKENDS,
    Diagnostic,
    ParsedConfig,
    TritonModel,
    enum_name,
    gpu_diagnostic,
    gpu_groups,
)

TENSORRT = "tensorrt_plan"


def check_config(model: TritonModel) -> Iterator[Diagnostic]:
    """Every per-config rule, in the order a reader meets the fields."""
    yield from _check_name(model)
    yield from _check_enums(model)
    yield from _check_backend(model)
    yield from _check_max_batch_size(model)
    for field in ("input", "output"):
        for index, tensor in enumerate(getattr(model.config, field)):
            yield from _check_tensor(model, field, index, tensor)
    yield from _check_dynamic_batching(model)
    yield from _check_instance_groups(model)
    yield from _check_versions(model)
    yield from _check_ensemble_fields(model)
    yield from _check_python(model)
    yield from _check_warmup(model)


def _check_name(model: TritonModel) -> Iterator[Diagnostic]:
    name = model.config.name
    if name and name != model.name:
        message = (
            f"name {name!r} must equal its directory name {model.name!r} (Triton refuses the model otherwise)"
        )
        yield model.parsed.diagnostic("config-name", message, "name", 0)


def _check_enums(model: TritonModel) -> Iterator[Diagnostic]:
    """Every enum field holds a value its enum names: protobuf's text format keeps any number written."""
    for name, enum, number, path in _enum_numbers(model.parsed, model.config, ()):
        if number not in enum.values_by_number:
            names = [value.name for value in enum.values]
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            message = f"{name} {number} is not a {enum.name} ({shown}); write one of its names"
            yield model.parsed.diagnostic("config-enum", message, *path)


def _enum_numbers(
    parsed: ParsedConfig, message: Message, path: tuple[str | int, ...]
) -> Iterator[tuple[str, EnumDescriptor, int, tuple[str | int, ...]]]:
    """Every enum value set in `message` and the messages inside it: its field, enum, number and position
    path."""
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, entry in sorted(value.items()):
                index = parsed.positions.map_entry(*path, field.name, key=str(key))
                at = (*path, field.name) if index is None else (*path, field.name, index, "value", 0)
                if isinstance(entry, Message):
                    yield from _enum_numbers(parsed, entry, at)
        elif field.type in (FieldDescriptor.TYPE_ENUM, FieldDescriptor.TYPE_MESSAGE):
            items = [value] if isinstance(value, (int, Message)) else value  # one value, or a repeated field
            for index, item in enumerate(items):
                if isinstance(item, Message):
                    yield from _enum_numbers(parsed, item, (*path, field.name, index))
                elif field.enum_type is not None:
                    yield field.name, field.enum_type, item, (*path, field.name, index)


def _check_backend(model: TritonModel) -> Iterator[Diagnostic]:
    config, parsed = model.config, model.parsed
    if config.platform == ENSEMBLE:
        if config.backend:
            message = 'an ensemble must not set backend (platform: "ensemble" alone)'
            yield parsed.diagnostic("backend", message, "backend", 0)
        return
    if config.platform and not config.backend and config.platform not in PLATFORM_BACKENDS:
        known = ", ".join(sorted([ENSEMBLE, *PLATFORM_BACKENDS]))
        message = f"unknown platform {config.platform!r}; use one of {known}, or set backend instead"
        yield parsed.diagnostic("backend", message, "platform", 0)
        return
    expected = PLATFORM_BACKENDS.get(config.platform)
    if config.platform and config.backend in PLATFORM_BACKENDS.values() and config.backend != expected:
        message = f"platform {config.platform!r} does not go with backend {config.backend!r}"
        yield parsed.diagnostic("backend", message, "platform", 0)
    if not model.backend():
        yield parsed.diagnostic("backend", _no_backend_message(model))


def _no_backend_message(model: TritonModel) -> str:
    inspected = model.inspected_subdirectory()
    if model.config.default_model_filename:
        where = f"default_model_filename {model.config.default_model_filename!r} names no known model file"
    elif inspected is None:
        where = "the model has no version directory to look into"
    else:
        where = (
            f"no model file (such as model.py) in {inspected.name}/, the one subdirectory Triton looks into"
        )
    return f'Triton cannot tell this model\'s backend: {where}; set backend: "python" (or a platform)'


def _check_max_batch_size(model: TritonModel) -> Iterator[Diagnostic]:
    if model.config.max_batch_size < 0:
        message = "max_batch_size must be 0 (no batching) or positive"
        yield model.parsed.diagnostic("max-batch-size", message, "max_batch_size", 0)


def _check_tensor(
    model: TritonModel, field: str, index: int, tensor: pb.ModelInput | pb.ModelOutput
) -> Iterator[Diagnostic]:
    parsed = model.parsed
    what = f"{field} {tensor.name!r}" if tensor.name else f"{field} #{index + 1}"
    if not tensor.name:
        yield parsed.diagnostic("tensor", f"{what} must have a name", field, index)
    if tensor.data_type == pb.TYPE_INVALID:
        yield parsed.diagnostic("tensor", f"{what} must set data_type (such as TYPE_FP32)", field, index)
    if not tensor.dims:
        message = f"{what} must set dims (a scalar is dims: [ 1 ] with reshape: {{ shape: [ ] }})"
        yield parsed.diagnostic("dims", message, field, index)
    for position, dim in enumerate(tensor.dims):
        if dim < 1 and dim != -1:
            message = f"{what} dims must be positive, or -1 for a variable size; found {dim}"
            yield parsed.diagnostic("dims", message, field, index, "dims", position)
    if tensor.HasField("reshape"):
        yield from _check_reshape(model, field, index, what, tensor)
    if isinstance(tensor, pb.ModelInput):
        if tensor.format in (pb.ModelInput.FORMAT_NHWC, pb.ModelInput.FORMAT_NCHW) and len(tensor.dims) != 3:
            yield parsed.diagnostic(
                "tensor", f"{what} format NHWC/NCHW needs exactly 3 dims", field, index, "format", 0
            )
    if tensor.is_shape_tensor and model.config.platform != TENSORRT:
        message = f"{what} is_shape_tensor works only on the TensorRT platform"
        yield parsed.diagnostic("tensor", message, field, index, "is_shape_tensor", 0)
    if isinstance(tensor, pb.ModelOutput) and tensor.label_filename:
        if not (model.directory / tensor.label_filename).is_file():
            message = f"{what} label_filename {tensor.label_filename!r} is not a file in {model.name}/"
            yield parsed.diagnostic("tensor", message, field, index, "label_filename", 0)


def _check_reshape(
    model: TritonModel, field: str, index: int, what: str, tensor: pb.ModelInput | pb.ModelOutput
) -> Iterator[Diagnostic]:
    parsed, shape = model.parsed, list(tensor.reshape.shape)
    bad = [position for position, dim in enumerate(shape) if dim < 1 and dim != -1]
    for position in bad:
        message = f"{what} reshape dims must be positive, or -1 for a variable size; found {shape[position]}"
        yield parsed.diagnostic("dims", message, field, index, "reshape", 0, "shape", position)
    if bad or not tensor.dims:
        return
    if not shape and model.config.max_batch_size == 0:
        message = f"{what} cannot reshape to a scalar in a model without batching (max_batch_size: 0)"
        yield parsed.diagnostic("dims", message, field, index, "reshape", 0)
    elif not _same_size(list(tensor.dims), shape):
        message = f"{what} reshape {shape} does not hold the same elements as dims {list(tensor.dims)}"
        yield parsed.diagnostic("dims", message, field, index, "reshape", 0)


def _same_size(dims: Sequence[int], shape: Sequence[int]) -> bool:
    """Whether reshaping `dims` to `shape` keeps the element count, segment by segment around each -1."""
    return _segments(dims) == _segments(shape)


def _segments(dims: Sequence[int]) -> list[int]:
    segments: list[int] = []
    current: list[int] = []
    for dim in dims:
        if dim == -1:
            segments.append(math.prod(current))
            current = []
        else:
            current.append(dim)
    return [*segments, math.prod(current)]


def _check_dynamic_batching(model: TritonModel) -> Iterator[Diagnostic]:
    config = model.config
    if not config.HasField("dynamic_batching"):
        return
    for position, size in enumerate(config.dynamic_batching.preferred_batch_size):
        if size <= 0:
            message = f"preferred_batch_size must be positive; found {size}"
        elif size > config.max_batch_size:
            message = f"preferred_batch_size {size} exceeds max_batch_size {config.max_batch_size}"
        else:
            continue
        yield model.parsed.diagnostic(
            "dynamic-batching", message, "dynamic_batching", 0, "preferred_batch_size", position
        )


def _check_instance_groups(model: TritonModel) -> Iterator[Diagnostic]:
    for index, group in enumerate(model.config.instance_group):
        kind = enum_name(pb.ModelInstanceGroup.Kind, group.kind)
        if group.kind in (pb.ModelInstanceGroup.KIND_CPU, pb.ModelInstanceGroup.KIND_MODEL) and group.gpus:
            message = f"instance_group of kind {kind} must not list gpus"
            yield model.parsed.diagnostic("instance-group", message, "instance_group", index, "gpus", 0)
        if group.profile and model.config.platform != TENSORRT:
            message = "instance_group profile works only on the TensorRT platform"
            yield model.parsed.diagnostic("instance-group", message, "instance_group", index, "profile", 0)


def check_devices(model: TritonModel) -> Iterator[Diagnostic]:
    """Warnings: instance groups that ask for a GPU, which the runtimes here do not have."""
    for index in gpu_groups(model.config):
        message = (
            "this instance group asks for a GPU, and the runtimes here run Triton on CPU only (it refuses the "
            "model: no GPUs are available): replay refuses it unless given --cpu (or gpu_as_cpu = true in the "
            "runtime's packager.toml table), which runs it as KIND_CPU in the staged copy only; what ships "
            "keeps KIND_GPU"
        )
        yield gpu_diagnostic(model, index, message)


def _check_versions(model: TritonModel) -> Iterator[Diagnostic]:
    if model.versions() and not model.versions_to_load():
        available = ", ".join(str(version) for version in sorted(model.versions()))
        message = (
            f"version_policy selects none of the version directories ({available}); Triton would load nothing"
        )
        yield model.parsed.diagnostic("version-dir", message, "version_policy", 0)


def _check_ensemble_fields(model: TritonModel) -> Iterator[Diagnostic]:
    config, parsed = model.config, model.parsed
    if not model.is_ensemble:
        if config.HasField("ensemble_scheduling"):
            message = 'ensemble_scheduling needs platform: "ensemble"'
            yield parsed.diagnostic("ensemble", message, "ensemble_scheduling", 0)
        return
    if not config.HasField("ensemble_scheduling"):
        yield parsed.diagnostic(
            "ensemble", 'platform "ensemble" needs an ensemble_scheduling block', "platform", 0
        )
    forbidden = {
        "instance_group": bool(config.instance_group),
        "optimization": config.HasField("optimization"),
        "model_warmup": bool(config.model_warmup),
    }
    for field, is_set in forbidden.items():
        if is_set:
            yield parsed.diagnostic("ensemble", f"an ensemble must not set {field}", field, 0)


def _check_python(model: TritonModel) -> Iterator[Diagnostic]:
    if not model.is_python:
        return
    parsed, file_name = model.parsed, model.python_file
    if not file_name.endswith(".py"):
        message = f"default_model_filename {file_name!r} must end in .py for the python backend"
        yield parsed.diagnostic("python-model", message, "default_model_filename", 0)
        return
    for directory in model.versions().values():
        if not (directory / file_name).is_file():
            message = (
                f"missing: every version of a python model needs {file_name} (Triton's load hangs or fails)"
            )
            yield Diagnostic(directory / file_name, None, None, message, "python-model")
        else:
            yield from check_python_file(directory / file_name)
    yield from _check_env_path(model)


def check_python_file(path: Path) -> Iterator[Diagnostic]:
    """A python step's model file compiles and defines TritonPythonModel at its top level."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as error:
        column = error.offset if error.lineno and error.offset else None  # 0: no column (a literal too long)
        yield Diagnostic(path, error.lineno, column, f"does not compile: {error.msg}", "python-model")
        return
    except (ValueError, RecursionError, MemoryError) as error:  # null bytes; nesting past the parser
        yield Diagnostic(path, None, None, f"does not compile: {error}", "python-model")
        return
    defined = {
        target.id if isinstance(target, ast.Name) else getattr(target, "name", "")
        for node in tree.body
        for target in (node.targets if isinstance(node, ast.Assign) else [node])
    }
    if "TritonPythonModel" not in defined:
        message = "defines no TritonPythonModel class, which the python backend instantiates"
        yield Diagnostic(path, None, None, message, "python-model")


def _check_env_path(model: TritonModel) -> Iterator[Diagnostic]:
    parameters = model.config.parameters
    if ENV_PATH_PARAMETER not in parameters:
        return
    value = parameters[ENV_PATH_PARAMETER].string_value
    entry = model.parsed.positions.map_entry("parameters", key=ENV_PATH_PARAMETER)
    field = ("parameters", entry, "value", 0, "string_value", 0) if entry is not None else ()
    if not value.startswith(MODEL_DIRECTORY_VARIABLE):
        message = (
            f"{ENV_PATH_PARAMETER} {value!r} must start with {MODEL_DIRECTORY_VARIABLE} "
            "(a relative or absolute path breaks once the model is moved)"
        )
        yield model.parsed.diagnostic("env-path", message, *field)
        return
    relative = posixpath.normpath(value.removeprefix(MODEL_DIRECTORY_VARIABLE))
    if relative in (".", "") or relative.startswith(("../", "/")) or relative == "..":
        message = (
            f"{ENV_PATH_PARAMETER} {value!r} must name a file inside the model's directory {model.name}/"
        )
        yield model.parsed.diagnostic("env-path", message, *field)


def _check_warmup(model: TritonModel) -> Iterator[Diagnostic]:
    for index, warmup in enumerate(model.config.model_warmup):
        for name, data in sorted(warmup.inputs.items()):
            if -1 in data.dims:
                message = f"model_warmup input {name!r} must give every dim (no -1)"
                yield model.parsed.diagnostic("warmup", message, "model_warmup", index)
            if data.WhichOneof("input_data_type") == "input_data_file":
                if not (model.directory / "warmup" / data.input_data_file).is_file():
                    message = f"model_warmup input {name!r} file warmup/{data.input_data_file} does not exist"
                    yield model.parsed.diagnostic("warmup", message, "model_warmup", index)
