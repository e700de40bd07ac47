"""A model's test cases: requests and expected outputs, kept as data in `tests/cases/*.json`.

Each case file holds one request in the Triton/KServe v2 JSON inference shape, and what must come back:

    {
      "description": "a handwritten 3 from the held-out set",
      "model": "digits",                              (optional: default, the model directory's top model)
      "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "files": ["images/3.png"]}],
      "outputs": [
        {"name": "LABEL", "datatype": "INT64", "shape": [1, 1], "data": [3]},
        {"name": "CONFIDENCE", "datatype": "FP32", "shape": [1, 1], "data": [0.93],
         "tolerance": {"absolute": 0.02}}
      ]
    }

`data` is row-major (flat or nested); `fill` instead gives one value that every element takes (what a
case template writes for a big tensor: `"fill": 0`); a BYTES tensor may give `files` instead (one element
per file, paths relative to the case file). Outputs compare exactly unless a tolerance is given (numpy.isclose). An
output whose `data` is null is not written yet: it loads (so a fresh case template validates) but never
passes, and replay shows what the server returned for it. Every problem is located as `path:line:col`.

A decoupled model (`model_transaction_policy { decoupled: true }`, or an ensemble with such a step) answers
with a stream of responses ended by the final flag, so its cases give `"responses"` instead of `"outputs"`:

    "responses": [{"outputs": [{"name": "OUT", ...}]}, {"outputs": [...]}]

every response of the stream, in order, but an empty final one (a model may send the final flag with its
last response or alone after it: both pass). `[]` expects the final flag alone; `{"outputs": []}` a
response without tensors that is not the last. Each output compares as above (its tolerance, `data` null
until written); `"responses": null` is a stream not written yet.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2

from packager.modeldir.diagnostics import Diagnostic
from packager.modeldir.json_positions import line_column, value_offsets
from packager.modeldir.model_config import TritonModel, decoupled_model, enum_name

CASES_DIR = Path("tests") / "cases"
MAX_DIMS = 32  # numpy's limit
MAX_VALUES = 1 << 24  # the most values a tensor of a case holds
LOCATED_DEPTH = 6  # "responses"[k]["outputs"][j]["data"][i]: the deepest value a problem points at
LONG_INTEGER = re.compile(r"[0-9]{%d,}" % (sys.get_int_max_str_digits() + 1))
DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


@dataclass(frozen=True)
class Tolerance:
    """How far a numeric output may be from the expected value: |got - want| <= absolute + relative*|want|."""

    absolute: float = 0.0
    relative: float = 0.0

    def __str__(self) -> str:
        return f"±{self.absolute:g}" + (f" (+{self.relative:g}×)" if self.relative else "")


@dataclass(frozen=True)
class Tensor:
    """A named tensor of a case, with its KServe v2 datatype (`written` False: an output whose expected
    values the case does not give yet; `data` then holds zeros of its shape)."""

    name: str
    datatype: str
    data: np.ndarray
    tolerance: Tolerance = Tolerance()
    written: bool = True

    @property
    def shape(self) -> list[int]:
        return list(self.data.shape)

    @property
    def binary(self) -> bool:
        """Whether JSON cannot carry the tensor: BYTES elements that are not UTF-8 text."""
        if self.datatype != "BYTES":
            return False
        for value in self.data.flat:
            try:
                bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return True
        return False

    def json_values(self) -> list[object]:
        """The elements, flat and row-major, as JSON writes them (BYTES as text: see `binary`)."""
        flat = self.data.reshape(-1)
        if self.datatype == "BYTES":
            return [bytes(value).decode("utf-8") for value in flat]
        values: list[object] = np.asarray(flat).tolist()
        return values


@dataclass(frozen=True)
class Stream:
    """What a decoupled model must answer a case with: each response's outputs, in order (an empty final
    response, the final flag alone, is not listed); `written` False while the case's "responses" is null.
    `generate_problem`: why Triton's HTTP generate_stream cannot carry the case (None: it can)."""

    responses: tuple[tuple[Tensor, ...], ...]
    written: bool = True
    generate_problem: str | None = None


@dataclass(frozen=True)
class Case:
    """One request to a Triton model and the outputs it must produce (`stream`, for a decoupled model:
    the responses it must send; `outputs` is then empty)."""

    id: str
    path: Path
    model: str
    description: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    stream: Stream | None = None


class CaseError(Exception):
    """A case file is not valid; carries the diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("\n".join(str(diagnostic) for diagnostic in diagnostics))
        self.diagnostics = diagnostics


def case_files(model_dir: Path) -> list[Path]:
    return sorted((model_dir / CASES_DIR).rglob("*.json"))


def load_cases(model_dir: Path, triton_models: Mapping[str, TritonModel], default_model: str) -> list[Case]:
    """Every case of a model directory, checked against the configs of the models they call."""
    cases, problems = [], []
    for path in case_files(model_dir):
        try:
            cases.append(_load(path, model_dir, triton_models, default_model))
        except CaseError as error:
            problems.extend(error.diagnostics)
    if problems:
        raise CaseError(problems)
    return cases


def kserve_datatype(data_type: int) -> str:
    """The KServe v2 name of a config's TYPE_* datatype (TYPE_STRING is BYTES)."""
    name = enum_name(model_config_pb2.DataType, data_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def example_tensor(
    spec: model_config_pb2.ModelInput | model_config_pb2.ModelOutput, batching: bool, filled: bool = True
) -> dict[str, object]:
    """A case's tensor for a config's input or output: its shape with a batch of 1 in front when the model
    batches and 1 for each variable (-1) dim, and zeros of its datatype (false for BOOL, "" for BYTES) as
    data, or null data when not `filled` (an output not written yet)."""
    datatype, shape = kserve_datatype(spec.data_type), _example_shape(spec, batching)
    zero: object = False if datatype == "BOOL" else "" if datatype == "BYTES" else 0
    data = [zero] * math.prod(shape) if filled else None
    return {"name": spec.name, "datatype": datatype, "shape": shape, "data": data}


def _example_shape(
    spec: model_config_pb2.ModelInput | model_config_pb2.ModelOutput, batching: bool
) -> list[int]:
    """A batch of 1 in front when the model batches, and 1 for each variable (-1) dim."""
    return [1] * batching + [1 if dim < 0 else int(dim) for dim in spec.dims]


def example_inputs(config: model_config_pb2.ModelConfig) -> list[dict[str, object]]:
    """Every required input of `config`, as `example_tensor` fills it."""
    batching = config.max_batch_size > 0
    return [example_tensor(spec, batching) for spec in config.input if not spec.optional]


def example_input_tensors(config: model_config_pb2.ModelConfig) -> tuple[Tensor, ...]:
    """Every required input of `config` as a tensor of zeros, as `example_inputs` writes them."""
    batching = config.max_batch_size > 0
    tensors = []
    for spec in config.input:
        if not spec.optional:
            datatype, shape = kserve_datatype(spec.data_type), _example_shape(spec, batching)
            if datatype == "BYTES":
                data = np.full(shape, b"", dtype=np.object_)
            else:
                data = np.zeros(shape, DATATYPES.get(datatype, np.float32))  # BF16 has no numpy type
            tensors.append(Tensor(spec.name, datatype, data))
    return tuple(tensors)


def generate_problem(config: model_config_pb2.ModelConfig, inputs: Sequence[Tensor]) -> str | None:
    """Why Triton's HTTP generate endpoints cannot send these inputs to a model of `config` (None: they
    can). They take each input as a flat JSON list, named by a key of the request object, and make its
    shape themselves: a batch of 1 in front when the model batches, then the config's dims, a variable
    dim (-1) set by the number of values; FP16 is refused in JSON."""
    declared = {spec.name: list(spec.dims) for spec in config.input}
    for tensor in inputs:
        if tensor.datatype == "FP16":
            return f"input {tensor.name!r} is FP16, which Triton's generate endpoints do not read from JSON"
        if tensor.binary:
            return f"input {tensor.name!r} holds bytes that are not UTF-8 text, which JSON cannot carry"
        made = _generated_shape(declared.get(tensor.name, []), tensor.data.size, config.max_batch_size > 0)
        if made != tensor.shape:
            return (
                f"input {tensor.name!r} has shape {tensor.shape}, but generate_stream makes a flat list of "
                f"{tensor.data.size} values {made if made is not None else 'no shape (two variable dims)'}"
            )
    return None


def _generated_shape(dims: list[int], size: int, batching: bool) -> list[int] | None:
    """The shape Triton's generate endpoints give `size` values of an input with `dims` (None: none)."""
    variable = [index for index, dim in enumerate(dims) if dim < 0]
    if len(variable) > 1:
        return None
    known = math.prod(dim for dim in dims if dim >= 0)
    shape = [(size // known if known else 0) if index in variable else dim for index, dim in enumerate(dims)]
    return [1] * batching + shape


class _CaseText:
    """A case file's text, to locate each problem at the value it is about."""

    def __init__(self, path: Path, text: str, model_dir: Path) -> None:
        self.path, self.text, self.model_dir = path, text, model_dir

    @cached_property
    def offsets(self) -> dict[tuple[str | int, ...], int]:
        """Where each value starts (found once, for the first problem: a good case never needs it)."""
        return value_offsets(self.text, LOCATED_DEPTH)

    def error(self, message: str, *where: str | int) -> CaseError:
        """A CaseError at the value `where` points to (or the nearest enclosing value written)."""
        while where not in self.offsets:
            where = where[:-1]
        line, column = line_column(self.text, self.offsets[where])
        return CaseError([Diagnostic(self.path, line, column, message, "case")])


def _load(path: Path, model_dir: Path, triton_models: Mapping[str, TritonModel], default_model: str) -> Case:
    try:
        text = path.read_bytes().decode("utf-8")
        document = json.loads(text)
        located = _CaseText(path, text, model_dir)
    except json.JSONDecodeError as error:
        message = f"is not valid JSON: {error.msg}"
        raise CaseError([Diagnostic(path, error.lineno, error.colno, message, "case")]) from None
    except UnicodeDecodeError as error:
        message = f"is not UTF-8 text (byte {error.start}); save it as UTF-8"
        raise CaseError([Diagnostic(path, None, None, message, "case")]) from None
    except ValueError:  # an integer past Python's limit on digits, which the JSON scanner cannot convert
        raise CaseError([_long_number(path, text)]) from None
    except RecursionError:
        raise CaseError([Diagnostic(path, None, None, "nests too deeply to be a case", "case")]) from None
    except OSError as error:
        raise CaseError([Diagnostic(path, None, None, f"cannot be read: {error.strerror}", "case")]) from None
    if not isinstance(document, dict):
        raise located.error('needs an object with "inputs" and "outputs" lists')
    if not isinstance(document.get("inputs"), list) or not document["inputs"]:
        raise located.error('needs a non-empty "inputs" list of tensors', "inputs")
    model_name = document.get("model", default_model)
    model = triton_models.get(model_name) if isinstance(model_name, str) else None
    if model is None:
        known = ", ".join(sorted(triton_models))
        raise located.error(
            f"calls model {model_name!r}, which is not in {model_dir.name}/ ({known})", "model"
        )
    description = document.get("description", "")
    if not isinstance(description, str):
        raise located.error("description must be a string", "description")
    inputs = _tensors(located, model, document["inputs"], ("inputs",))
    streamer = decoupled_model(model_name, triton_models)
    case_id = path.relative_to(model_dir / CASES_DIR).with_suffix("").as_posix()
    if streamer is None:
        if "responses" in document:
            message = f'"responses" is for decoupled models; {model_name} sends one response: give "outputs"'
            raise located.error(message, "responses")
        if not isinstance(document.get("outputs"), list) or not document["outputs"]:
            raise located.error('needs a non-empty "outputs" list of tensors', "outputs")
        outputs = _tensors(located, model, document["outputs"], ("outputs",))
        return Case(case_id, path, model_name, description, inputs, outputs)
    why = (
        f"{model_name} is decoupled (model_transaction_policy {{ decoupled: true }})"
        if streamer == model_name
        else f"{model_name} streams what its decoupled step {streamer!r} sends"
    )
    stream = _stream(located, model, document, why, inputs)
    return Case(case_id, path, model_name, description, inputs, (), stream)


def _tensors(
    located: _CaseText, model: TritonModel, items: list[Any], at: tuple[str | int, ...]
) -> tuple[Tensor, ...]:
    """The tensors listed at `at` ("inputs", "outputs", or a response's "outputs"), checked against the
    config of the model the case calls."""
    tensors = tuple(_tensor(located, (*at, index), item) for index, item in enumerate(items))
    _check_against_config(located, model, tensors, at)
    return tensors


def _stream(
    located: _CaseText, model: TritonModel, document: dict[str, Any], why: str, inputs: tuple[Tensor, ...]
) -> Stream:
    """A decoupled model's case: its "responses", each an object holding that response's "outputs"."""
    listing = '[{"outputs": [...]}, ...]'
    if "outputs" in document:
        message = f'{why}: it answers with a stream; give each response in order as "responses": {listing}'
        raise located.error(message + ', not "outputs"', "outputs")
    if "responses" not in document:
        raise located.error(
            f'needs "responses": {listing}, every response in order (null until written): {why}'
        )
    listed = document["responses"]
    if listed is None:
        return Stream((), written=False, generate_problem=generate_problem(model.config, inputs))
    if not isinstance(listed, list):
        raise located.error(f"responses must be a list, {listing} (null until written)", "responses")
    responses = []
    for index, item in enumerate(listed):
        if not isinstance(item, dict) or set(item) != {"outputs"} or not isinstance(item["outputs"], list):
            message = f'responses[{index}] must be {{"outputs": [...]}}, the tensors of response {index}'
            raise located.error(message, "responses", index)
        responses.append(_tensors(located, model, item["outputs"], ("responses", index, "outputs")))
    half = next(
        (tensor.name for response in responses for tensor in response if tensor.datatype == "FP16"), None
    )
    problem = generate_problem(model.config, inputs) or (
        f"output {half!r} is FP16, which Triton's generate endpoints do not write as JSON" if half else None
    )
    return Stream(tuple(responses), generate_problem=problem)


def _long_number(path: Path, text: str) -> Diagnostic:
    """Where a JSON text holds an integer with more digits than Python converts."""
    found = LONG_INTEGER.search(text)
    line, column = line_column(text, found.start()) if found else (None, None)
    limit = sys.get_int_max_str_digits()
    return Diagnostic(
        path, line, column, f"holds an integer of more than {limit} digits; no tensor holds one", "case"
    )


def _label(at: tuple[str | int, ...]) -> str:
    """A value's path as a case's reader says it: `inputs[0]`, `responses[1].outputs[0]`."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in at).lstrip(".")


def _tensor(located: _CaseText, at: tuple[str | int, ...], item: Any) -> Tensor:
    """The tensor at `at` (an input when `at` starts with "inputs", else an expected output)."""
    where, is_input = _label(at), at[0] == "inputs"
    if not isinstance(item, dict) or not {"name", "datatype", "shape"} <= set(item):
        raise located.error(f"{where} needs name, datatype and shape", *at)
    name, datatype, shape = item["name"], item["datatype"], item["shape"]
    if not isinstance(name, str) or not name:
        raise located.error(f"{where} name must be a tensor's name", *at, "name")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        choices = ", ".join(DATATYPES)
        raise located.error(f"{where} datatype {datatype!r} is not one of {choices}", *at, "datatype")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(d) and d >= 0 for d in shape):
        raise located.error(
            f"{where} shape must be a list of up to {MAX_DIMS} sizes, such as [1, 64]", *at, "shape"
        )
    if any(dim > MAX_VALUES for dim in shape):
        message = f"{where} shape {_shown(shape)} has a size over {MAX_VALUES}, too large for a case"
        raise located.error(message, *at, "shape")
    size = math.prod(shape)
    if "fill" in item and "data" in item:
        raise located.error(f"{where} gives both data and fill; keep one", *at, "fill")
    if is_input and "files" in item:
        data = _files(located, where, at, item["files"], datatype)
    elif not is_input and item.get("data", 0) is None:
        _check_size(located, where, at, shape)
        return Tensor(
            name, datatype, np.zeros(shape, DATATYPES[datatype]), _tolerance(located, at, item), written=False
        )
    elif "fill" in item:
        _check_size(located, where, at, shape)
        data = _filled(located, where, at=(*at, "fill"), value=item["fill"], shape=shape, datatype=datatype)
    elif "data" in item:
        data = _data(located, where, (*at, "data"), item["data"], datatype)
    else:
        need = (
            "data, fill or files"
            if is_input
            else "data (null while the expected values are not written) or fill"
        )
        raise located.error(f"{where} needs {need}", *at)
    if data.size != size:
        message = f"{where} has {data.size} values, but shape {shape} holds {size}"
        raise located.error(message, *at, "shape")
    return Tensor(name, datatype, data.reshape(shape), _tolerance(located, at, item))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _files(
    located: _CaseText, where: str, at: tuple[str | int, ...], names: Any, datatype: str
) -> np.ndarray:
    if datatype != "BYTES":
        raise located.error(f"{where} files are only for BYTES tensors", *at, "files")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise located.error(f"{where} files must be a list of file names", *at, "files")
    values = []
    for position, name in enumerate(names):
        payload = located.path.parent / name
        try:
            if not payload.resolve().is_relative_to(located.model_dir.resolve()):
                message = f"{where} file {_shown(name)} is outside the model directory; keep payloads in it"
                raise located.error(message, *at, "files", position)
            if not payload.is_file():
                message = f"{where} file {_shown(name)} does not exist next to the case"
                raise located.error(message, *at, "files", position)
            values.append(payload.read_bytes())
        except OSError as error:  # a name too long for the file system, a file it may not read
            message = f"{where} file {_shown(name)} cannot be read: {error.strerror}"
            raise located.error(message, *at, "files", position) from None
    data = np.empty(len(values), dtype=np.object_)
    data[:] = values
    return data


def _check_size(located: _CaseText, where: str, at: tuple[str | int, ...], shape: list[int]) -> None:
    """Refuse a shape of more values than a case holds, before making an array of it."""
    if math.prod(shape) > MAX_VALUES:
        raise located.error(f"{where} shape {shape} is too large for a case", *at, "shape")


def _filled(
    located: _CaseText, where: str, *, at: tuple[str | int, ...], value: Any, shape: list[int], datatype: str
) -> np.ndarray:
    """An array of `shape` whose every element is `value` (a case's `fill`), checked against `datatype`."""
    if isinstance(value, list):
        raise located.error(f"{where} fill must be one value, which every element takes (not a list)", *at)
    (element,) = _data(located, where, at, value, datatype)
    return np.full(shape, element, dtype=DATATYPES[datatype])


def _data(located: _CaseText, where: str, at: tuple[str | int, ...], data: Any, datatype: str) -> np.ndarray:
    """The values of `data` (nested lists or one scalar) as an array of `datatype`, each value checked;
    `at` ends with the field they come from (data or fill)."""
    values = list(_leaves(data))
    problem = next(filter(None, (_misfit(value, datatype) for value in values)), None)
    if problem:
        raise located.error(f"{where} {at[-1]} does not fit {datatype}: {problem}", *at)
    if datatype == "BYTES":
        array = np.empty(len(values), dtype=np.object_)
        array[:] = [value.encode() for value in values]
        return array
    return np.array(values, dtype=DATATYPES[datatype])


def _leaves(data: Any) -> Iterator[Any]:
    """The scalars of nested lists, row-major (without recursion: a case may nest deep)."""
    stack = [iter([data])]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            yield value
        else:
            stack.pop()


def _misfit(value: Any, datatype: str) -> str | None:
    """Why `value` is not a `datatype` element (None when it is)."""
    if datatype == "BYTES":
        if not isinstance(value, str):
            return f"{_shown(value)} is not a string"
        return (
            None if _is_unicode(value) else f"{_shown(value)} holds a lone surrogate escape such as \\ud800"
        )
    if datatype == "BOOL":
        return None if isinstance(value, bool) else f"{_shown(value)} is not true or false"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{_shown(value)} is not a number"
    kind = DATATYPES[datatype]
    if np.issubdtype(kind, np.integer):
        limits = np.iinfo(kind)
        if not _is_int(value):
            return f"{_shown(value)} is not an integer"
        return (
            None
            if limits.min <= value <= limits.max
            else f"{_shown(value)} is outside [{limits.min}, {limits.max}]"
        )
    largest = float(np.finfo(kind).max)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN and ±Infinity, which Python's JSON reads
    return None if abs(value) <= largest else f"{_shown(value)} is beyond ±{largest:g}"


def _is_unicode(text: str) -> bool:
    """Whether `text` encodes as UTF-8 (JSON's \\u escapes can write half of a surrogate pair alone)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _tolerance(located: _CaseText, at: tuple[str | int, ...], item: dict[str, Any]) -> Tolerance:
    tolerance = item.get("tolerance", {})
    usable = isinstance(tolerance, dict) and set(tolerance) <= {"absolute", "relative"}
    if not usable or not all(_is_number(value) and value >= 0 for value in tolerance.values()):
        message = f'{_label(at)} tolerance is {{"absolute": A, "relative": R}}, each a number >= 0'
        raise located.error(message, *at, "tolerance")
    return Tolerance(**{key: float(value) for key, value in tolerance.items()})


def _is_number(value: Any) -> bool:
    """A finite JSON number that fits a float."""
    if _is_int(value):
        return bool(abs(value) <= sys.float_info.max)
    return isinstance(value, float) and math.isfinite(value)


def _check_against_config(
    located: _CaseText, model: TritonModel, tensors: tuple[Tensor, ...], at: tuple[str | int, ...]
) -> None:
    if not model.config_known:
        return  # Triton completes its config, and was not asked: validate says so
    config = model.loaded_config
    kind = "input" if at[0] == "inputs" else "output"
    response = f"response {at[1]}: " if at[0] == "responses" else ""
    declared = {tensor.name: tensor for tensor in getattr(config, kind)}
    batching = config.max_batch_size > 0
    source = " (as Triton completes its config)" if model.completed is not None else ""
    for index, tensor in enumerate(tensors):
        spec = declared.get(tensor.name)
        subject = f"{response}{kind} {tensor.name!r}"
        if spec is None:
            known = ", ".join(sorted(declared)) or "none"
            message = f"{subject} is not an {kind} of model {model.name!r} ({known}){source}"
            raise located.error(message, *at, index, "name")
        expected_type = kserve_datatype(spec.data_type)
        if tensor.datatype != expected_type:
            message = f"{subject} is {expected_type} in {model.name}'s config{source}, not {tensor.datatype}"
            raise located.error(message, *at, index, "datatype")
        dims = list(spec.dims)
        shape = tensor.shape[1:] if batching else tensor.shape
        if len(shape) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, shape, strict=True)):
            if batching:
                expected = f"[batch, {', '.join(map(str, dims))}]".replace(", ]", "]")
                why = f"{model.name} batches (max_batch_size {config.max_batch_size}){source}"
            else:
                expected, why = str(dims), f"{model.name} does not batch (no max_batch_size){source}"
            message = f"{subject} shape {tensor.shape} does not match {expected}: {why}"
            raise located.error(message, *at, index, "shape")
        if batching and tensor.shape and tensor.shape[0] > config.max_batch_size:
            message = (
                f"{subject} batch of {tensor.shape[0]} is over max_batch_size {config.max_batch_size}{source}"
            )
            raise located.error(message, *at, index, "shape")
    if kind == "input":
        given = {tensor.name for tensor in tensors}
        missing = sorted(name for name, spec in declared.items() if name not in given and not spec.optional)
        if missing:
            message = f"gives no {', '.join(map(repr, missing))}: model {model.name!r} requires every input it declares"
            raise located.error(message, "inputs")
