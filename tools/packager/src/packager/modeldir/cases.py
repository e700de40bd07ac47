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

`data` is row-major (flat or nested); a BYTES tensor may give `files` instead (one element per file,
paths relative to the case file). Outputs compare exactly unless a tolerance is given (numpy.isclose). An
output whose `data` is null is not written yet: it loads (so a fresh case template validates) but never
passes, and replay shows what the server returned for it. Every problem is located as `path:line:col`.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
from tritonclient.grpc import model_config_pb2

from packager.modeldir.diagnostics import Diagnostic
from packager.modeldir.json_positions import line_column, value_offsets
from packager.modeldir.model_config import TritonModel, enum_name

CASES_DIR = Path("tests") / "cases"
MAX_DIMS = 32  # numpy's limit
MAX_VALUES = 1 << 24  # the most values a tensor of a case holds
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


@dataclass(frozen=True)
class Case:
    """One request to a Triton model and the outputs it must produce."""

    id: str
    path: Path
    model: str
    description: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


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
    datatype = kserve_datatype(spec.data_type)
    shape = [1] * batching + [1 if dim < 0 else int(dim) for dim in spec.dims]
    zero: object = False if datatype == "BOOL" else "" if datatype == "BYTES" else 0
    data = [zero] * math.prod(shape) if filled else None
    return {"name": spec.name, "datatype": datatype, "shape": shape, "data": data}


def example_inputs(config: model_config_pb2.ModelConfig) -> list[dict[str, object]]:
    """Every required input of `config`, as `example_tensor` fills it."""
    batching = config.max_batch_size > 0
    return [example_tensor(spec, batching) for spec in config.input if not spec.optional]


class _CaseText:
    """A case file's text, to locate each problem at the value it is about."""

    def __init__(self, path: Path, text: str, model_dir: Path) -> None:
        self.path, self.text, self.model_dir = path, text, model_dir
        self.offsets = value_offsets(text)

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
    for key in ("inputs", "outputs"):
        if not isinstance(document.get(key), list) or not document[key]:
            raise located.error(f'needs a non-empty "{key}" list of tensors', key)
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
    inputs = tuple(_tensor(located, "inputs", index, item) for index, item in enumerate(document["inputs"]))
    outputs = tuple(
        _tensor(located, "outputs", index, item) for index, item in enumerate(document["outputs"])
    )
    _check_against_config(located, model, inputs, "input")
    _check_against_config(located, model, outputs, "output")
    case_id = path.relative_to(model_dir / CASES_DIR).with_suffix("").as_posix()
    return Case(case_id, path, model_name, description, inputs, outputs)


def _long_number(path: Path, text: str) -> Diagnostic:
    """Where a JSON text holds an integer with more digits than Python converts."""
    found = LONG_INTEGER.search(text)
    line, column = line_column(text, found.start()) if found else (None, None)
    limit = sys.get_int_max_str_digits()
    return Diagnostic(
        path, line, column, f"holds an integer of more than {limit} digits; no tensor holds one", "case"
    )


def _tensor(located: _CaseText, kind: str, index: int, item: Any) -> Tensor:
    where = f"{kind}[{index}]"
    if not isinstance(item, dict) or not {"name", "datatype", "shape"} <= set(item):
        raise located.error(f"{where} needs name, datatype and shape", kind, index)
    name, datatype, shape = item["name"], item["datatype"], item["shape"]
    if not isinstance(name, str) or not name:
        raise located.error(f"{where} name must be a tensor's name", kind, index, "name")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        choices = ", ".join(DATATYPES)
        raise located.error(f"{where} datatype {datatype!r} is not one of {choices}", kind, index, "datatype")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(d) and d >= 0 for d in shape):
        raise located.error(
            f"{where} shape must be a list of up to {MAX_DIMS} sizes, such as [1, 64]", kind, index, "shape"
        )
    if any(dim > MAX_VALUES for dim in shape):
        message = f"{where} shape {_shown(shape)} has a size over {MAX_VALUES}, too large for a case"
        raise located.error(message, kind, index, "shape")
    size = math.prod(shape)
    if kind == "inputs" and "files" in item:
        data = _files(located, where, index, item["files"], datatype)
    elif kind == "outputs" and item.get("data", 0) is None:
        if size > MAX_VALUES:
            raise located.error(f"{where} shape {shape} is too large for a case", kind, index, "shape")
        return Tensor(
            name,
            datatype,
            np.zeros(shape, DATATYPES[datatype]),
            _tolerance(located, kind, index, item),
            written=False,
        )
    elif "data" in item:
        data = _data(located, where, (kind, index, "data"), item["data"], datatype)
    else:
        need = (
            "data or files" if kind == "inputs" else "data (null while the expected values are not written)"
        )
        raise located.error(f"{where} needs {need}", kind, index)
    if data.size != size:
        message = f"{where} has {data.size} values, but shape {shape} holds {size}"
        raise located.error(message, kind, index, "shape")
    return Tensor(name, datatype, data.reshape(shape), _tolerance(located, kind, index, item))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _files(located: _CaseText, where: str, index: int, names: Any, datatype: str) -> np.ndarray:
    if datatype != "BYTES":
        raise located.error(f"{where} files are only for BYTES tensors", "inputs", index, "files")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise located.error(f"{where} files must be a list of file names", "inputs", index, "files")
    values = []
    for position, name in enumerate(names):
        payload = located.path.parent / name
        try:
            if not payload.resolve().is_relative_to(located.model_dir.resolve()):
                message = f"{where} file {_shown(name)} is outside the model directory; keep payloads in it"
                raise located.error(message, "inputs", index, "files", position)
            if not payload.is_file():
                message = f"{where} file {_shown(name)} does not exist next to the case"
                raise located.error(message, "inputs", index, "files", position)
            values.append(payload.read_bytes())
        except OSError as error:  # a name too long for the file system, a file it may not read
            message = f"{where} file {_shown(name)} cannot be read: {error.strerror}"
            raise located.error(message, "inputs", index, "files", position) from None
    data = np.empty(len(values), dtype=np.object_)
    data[:] = values
    return data


def _data(located: _CaseText, where: str, at: tuple[str, int, str], data: Any, datatype: str) -> np.ndarray:
    """The values of `data` (nested lists or one scalar) as an array of `datatype`, each value checked."""
    values = list(_leaves(data))
    problem = next(filter(None, (_misfit(value, datatype) for value in values)), None)
    if problem:
        raise located.error(f"{where} data does not fit {datatype}: {problem}", *at)
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


def _tolerance(located: _CaseText, kind: str, index: int, item: dict[str, Any]) -> Tolerance:
    where = f"{kind}[{index}]"
    tolerance = item.get("tolerance", {})
    usable = isinstance(tolerance, dict) and set(tolerance) <= {"absolute", "relative"}
    if not usable or not all(_is_number(value) and value >= 0 for value in tolerance.values()):
        message = f'{where} tolerance is {{"absolute": A, "relative": R}}, each a number >= 0'
        raise located.error(message, kind, index, "tolerance")
    return Tolerance(**{key: float(value) for key, value in tolerance.items()})


def _is_number(value: Any) -> bool:
    """A finite JSON number that fits a float."""
    if _is_int(value):
        return bool(abs(value) <= sys.float_info.max)
    return isinstance(value, float) and math.isfinite(value)


def _check_against_config(
    located: _CaseText, model: TritonModel, tensors: tuple[Tensor, ...], kind: str
) -> None:
    if not model.config_known:
        return  # Triton completes its config, and was not asked: validate says so
    config = model.loaded_config
    declared = {tensor.name: tensor for tensor in getattr(config, kind)}
    batching = config.max_batch_size > 0
    key = f"{kind}s"
    source = " (as Triton completes its config)" if model.completed is not None else ""
    for index, tensor in enumerate(tensors):
        spec = declared.get(tensor.name)
        if spec is None:
            known = ", ".join(sorted(declared)) or "none"
            message = f"{kind} {tensor.name!r} is not an {kind} of model {model.name!r} ({known}){source}"
            raise located.error(message, key, index, "name")
        expected_type = kserve_datatype(spec.data_type)
        if tensor.datatype != expected_type:
            message = f"{kind} {tensor.name!r} is {expected_type} in {model.name}'s config{source}, not {tensor.datatype}"
            raise located.error(message, key, index, "datatype")
        dims = list(spec.dims)
        shape = tensor.shape[1:] if batching else tensor.shape
        if len(shape) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, shape)):
            if batching:
                expected = f"[batch, {', '.join(map(str, dims))}]".replace(", ]", "]")
                why = f"{model.name} batches (max_batch_size {config.max_batch_size}){source}"
            else:
                expected, why = str(dims), f"{model.name} does not batch (no max_batch_size){source}"
            message = f"{kind} {tensor.name!r} shape {tensor.shape} does not match {expected}: {why}"
            raise located.error(message, key, index, "shape")
        if batching and tensor.shape and tensor.shape[0] > config.max_batch_size:
            message = f"{kind} {tensor.name!r} batch of {tensor.shape[0]} is over max_batch_size {config.max_batch_size}{source}"
            raise located.error(message, key, index, "shape")
    if kind == "input":
        given = {tensor.name for tensor in tensors}
        missing = sorted(name for name, spec in declared.items() if name not in given and not spec.optional)
        if missing:
            message = f"gives no {', '.join(map(repr, missing))}: model {model.name!r} requires every input it declares"
            raise located.error(message, "inputs")
