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
paths relative to the case file). Outputs compare exactly unless a tolerance is given (numpy.isclose).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tritonclient.grpc import model_config_pb2

from packager.modeldir.diagnostics import Diagnostic
from packager.modeldir.model_config import TritonModel

CASES_DIR = Path("tests") / "cases"
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
    """A named tensor of a case, with its KServe v2 datatype."""

    name: str
    datatype: str
    data: np.ndarray
    tolerance: Tolerance = Tolerance()

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


def _problem(path: Path, message: str, line: int | None = None, column: int | None = None) -> CaseError:
    return CaseError([Diagnostic(path, line, column, message, "case")])


def _load(path: Path, model_dir: Path, triton_models: Mapping[str, TritonModel], default_model: str) -> Case:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise _problem(path, f"is not valid JSON: {error.msg}", error.lineno, error.colno) from None
    except UnicodeDecodeError:
        raise _problem(path, "is not UTF-8 text") from None
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise _problem(path, 'needs an object with "inputs" and "outputs" lists')
    if not isinstance(document.get("outputs"), list) or not document["outputs"]:
        raise _problem(path, 'needs a non-empty "outputs" list: a case checks what comes back')
    model_name = document.get("model", default_model)
    model = triton_models.get(model_name)
    if model is None:
        raise _problem(
            path,
            f"calls model {model_name!r}, which is not in {model_dir.name}/ ({', '.join(sorted(triton_models))})",
        )
    inputs = tuple(
        _tensor(path, f"inputs[{index}]", item, "input") for index, item in enumerate(document["inputs"])
    )
    outputs = tuple(
        _tensor(path, f"outputs[{index}]", item, "output") for index, item in enumerate(document["outputs"])
    )
    _check_against_config(path, model, inputs, "input")
    _check_against_config(path, model, outputs, "output")
    case_id = path.relative_to(model_dir / CASES_DIR).with_suffix("").as_posix()
    return Case(case_id, path, model_name, str(document.get("description", "")), inputs, outputs)


def _tensor(path: Path, where: str, item: Any, kind: str) -> Tensor:
    if not isinstance(item, dict) or not {"name", "datatype", "shape"} <= set(item):
        raise _problem(path, f"{where} needs name, datatype and shape")
    datatype = item["datatype"]
    if datatype not in DATATYPES:
        raise _problem(path, f"{where} datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    shape = item["shape"]
    if not isinstance(shape, list) or not all(isinstance(dim, int) and dim >= 0 for dim in shape):
        raise _problem(path, f"{where} shape must be a list of sizes, such as [1, 64]")
    if "files" in item and kind == "input":
        if datatype != "BYTES":
            raise _problem(path, f"{where} files are only for BYTES tensors")
        values = [_read_payload(path, where, name) for name in item["files"]]
        data = np.empty(len(values), dtype=np.object_)
        data[:] = values
    elif "data" in item:
        if datatype == "BYTES":
            flat = np.array(item["data"], dtype=np.object_).reshape(-1)
            data = np.array(
                [value.encode() if isinstance(value, str) else value for value in flat], dtype=np.object_
            )
        else:
            try:
                data = np.array(item["data"], dtype=DATATYPES[datatype])
            except (TypeError, ValueError, OverflowError) as error:
                raise _problem(path, f"{where} data does not fit {datatype}: {error}") from None
    else:
        raise _problem(path, f"{where} needs data" + (" or files" if kind == "input" else ""))
    if data.size != int(np.prod(shape)):
        raise _problem(path, f"{where} has {data.size} values, but shape {shape} holds {int(np.prod(shape))}")
    tolerance = item.get("tolerance", {})
    if not isinstance(tolerance, dict) or not set(tolerance) <= {"absolute", "relative"}:
        raise _problem(path, f'{where} tolerance is {{"absolute": A, "relative": R}}')
    return Tensor(
        item["name"], datatype, data.reshape(shape), Tolerance(**{k: float(v) for k, v in tolerance.items()})
    )


def _read_payload(path: Path, where: str, name: Any) -> bytes:
    payload = path.parent / str(name)
    if not payload.is_file():
        raise _problem(path, f"{where} file {name!r} does not exist next to the case")
    return payload.read_bytes()


def _check_against_config(path: Path, model: TritonModel, tensors: tuple[Tensor, ...], kind: str) -> None:
    declared = {tensor.name: tensor for tensor in getattr(model.config, kind)}
    batching = model.config.max_batch_size > 0
    for tensor in tensors:
        spec = declared.get(tensor.name)
        if spec is None:
            known = ", ".join(sorted(declared)) or "none"
            raise _problem(path, f"{kind} {tensor.name!r} is not an {kind} of model {model.name!r} ({known})")
        expected_type = _kserve_datatype(spec.data_type)
        if tensor.datatype != expected_type:
            raise _problem(
                path,
                f"{kind} {tensor.name!r} is {expected_type} in {model.name}'s config, not {tensor.datatype}",
            )
        dims = list(spec.dims)
        shape = tensor.shape[1:] if batching else tensor.shape
        if len(shape) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, shape)):
            batch = " after the batch dimension" if batching else ""
            raise _problem(
                path, f"{kind} {tensor.name!r} shape {tensor.shape} does not match dims {dims}{batch}"
            )


def _kserve_datatype(data_type: int) -> str:
    name = str(model_config_pb2.DataType.Name(data_type)).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name
