"""Case files: the KServe v2 JSON shape, payload files, tolerances, and errors that name the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from packager.modeldir import Case, CaseError, ModelDir, TritonModel, load_cases
from packager.validation import validate_model
from tests.conftest import REPEAT, REPEAT_CONFIG, SQUARE, SQUARE_CONFIG, one_model_dir

MODELS = Path(__file__).parent.parent / "models"


@pytest.fixture
def digits(tmp_path: Path) -> tuple[Path, dict[str, TritonModel]]:
    model = tmp_path / "digits"
    shutil.copytree(MODELS / "digits", model, ignore=shutil.ignore_patterns("python_env.tar.gz"))
    return model, validate_model(ModelDir(model)).triton_models


def _load(model: Path, triton_models: dict[str, TritonModel]) -> list[Case]:
    return load_cases(model, triton_models, "digits")


def test_repository_cases_load(digits: tuple[Path, dict[str, TritonModel]]) -> None:
    model, triton_models = digits
    cases = _load(model, triton_models)
    assert len(cases) == 13
    batch = next(case for case in cases if case.id == "batch_of_three")
    image = batch.inputs[0]
    assert (image.name, image.datatype, image.shape) == ("IMAGE", "BYTES", [3, 1])
    assert bytes(image.data[0, 0]).startswith(b"\x89PNG")
    label, confidence = batch.outputs
    assert label.data.dtype == np.int64 and label.data.tolist() == [[1], [4], [9]]
    assert confidence.tolerance.absolute == 0.01


def _write(model: Path, name: str, document: object) -> Path:
    path = model / "tests" / "cases" / f"{name}.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document, indent=2))
    return path


GOOD_OUTPUT = {"name": "LABEL", "datatype": "INT64", "shape": [1, 1], "data": [3]}
GOOD_INPUT = {"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "data": ["not really a png"]}


@pytest.mark.parametrize(
    "document, message, at",
    [
        ('{"inputs": [\n  {"name": }]}', "broken.json:2:12: is not valid JSON: Expecting value", "}]}"),
        ({"inputs": [GOOD_INPUT], "outputs": []}, 'needs a non-empty "outputs" list', "[]"),
        ([GOOD_INPUT], 'needs an object with "inputs" and "outputs"', "["),
        (
            {"model": "nope", "inputs": [GOOD_INPUT], "outputs": [GOOD_OUTPUT]},
            "calls model 'nope', which is not in digits/",
            '"nope"',
        ),
        (
            {"model": ["digits"], "inputs": [GOOD_INPUT], "outputs": [GOOD_OUTPUT]},
            "calls model ['digits'], which is not in digits/",
            "[",
        ),
        (
            {"inputs": [{**GOOD_INPUT, "name": "IMG"}], "outputs": [GOOD_OUTPUT]},
            "input 'IMG' is not an input of model 'digits' (IMAGE)",
            '"IMG"',
        ),
        (
            {"inputs": [{**GOOD_INPUT, "datatype": "FP32", "data": [1.0]}], "outputs": [GOOD_OUTPUT]},
            "input 'IMAGE' is BYTES in digits's config, not FP32",
            '"FP32"',
        ),
        (
            {"inputs": [{**GOOD_INPUT, "shape": [1, 2], "data": ["a", "b"]}], "outputs": [GOOD_OUTPUT]},
            "input 'IMAGE' shape [1, 2] does not match [batch, 1]: digits batches (max_batch_size 16)",
            "[",
        ),
        (
            {"inputs": [{**GOOD_INPUT, "shape": [17, 1], "data": ["a"] * 17}], "outputs": [GOOD_OUTPUT]},
            "batch of 17 is over max_batch_size 16",
            "[",
        ),
        (
            {"inputs": [{**GOOD_INPUT, "shape": [2, 1]}], "outputs": [GOOD_OUTPUT]},
            "inputs[0] has 1 values, but shape [2, 1] holds 2",
            "[",
        ),
        (
            {"inputs": [{**GOOD_INPUT, "shape": [1, True]}], "outputs": [GOOD_OUTPUT]},
            "inputs[0] shape must be a list of up to 32 sizes",
            "[",
        ),
        (
            {
                "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "files": ["missing.png"]}],
                "outputs": [GOOD_OUTPUT],
            },
            "file 'missing.png' does not exist next to the case",
            '"missing.png"',
        ),
        (
            {
                "inputs": [
                    {"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "files": ["../../../x.png"]}
                ],
                "outputs": [GOOD_OUTPUT],
            },
            "file '../../../x.png' is outside the model directory; keep payloads in it",
            '"../../../x.png"',
        ),
        (
            {"inputs": [GOOD_INPUT], "outputs": [{**GOOD_OUTPUT, "data": ["three"]}]},
            "outputs[0] data does not fit INT64: 'three' is not a number",
            "[",
        ),
        (
            {"inputs": [GOOD_INPUT], "outputs": [{**GOOD_OUTPUT, "data": [2**70]}]},
            "outputs[0] data does not fit INT64: 1180591620717411303424 is outside",
            "[",
        ),
        (
            {"inputs": [GOOD_INPUT], "outputs": [{**GOOD_OUTPUT, "tolerance": {"abs": 1}}]},
            'tolerance is {"absolute": A, "relative": R}',
            "{",
        ),
        (
            {"inputs": [GOOD_INPUT], "outputs": [{**GOOD_OUTPUT, "tolerance": {"absolute": "1"}}]},
            "each a number >= 0",
            "{",
        ),
        (
            {"inputs": [GOOD_INPUT], "outputs": [{**GOOD_OUTPUT, "datatype": "INT65"}]},
            "datatype 'INT65' is not one of",
            '"INT65"',
        ),
        (
            {"inputs": [{**GOOD_INPUT, "fill": "a"}], "outputs": [GOOD_OUTPUT]},
            "inputs[0] gives both data and fill; keep one",
            '"a"',
        ),
        (
            {
                "inputs": [GOOD_INPUT],
                "outputs": [{"name": "LABEL", "datatype": "INT64", "shape": [1, 1], "fill": [3]}],
            },
            "outputs[0] fill must be one value, which every element takes (not a list)",
            "[",
        ),
        (
            {
                "inputs": [GOOD_INPUT],
                "outputs": [{"name": "LABEL", "datatype": "INT64", "shape": [1, 1], "fill": "x"}],
            },
            "outputs[0] fill does not fit INT64: 'x' is not a number",
            '"x"',
        ),
        (
            {
                "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [4096, 4097], "fill": ""}],
                "outputs": [GOOD_OUTPUT],
            },
            "inputs[0] shape [4096, 4097] is too large for a case",
            "[",
        ),
        (
            {"inputs": [GOOD_INPUT], "outputs": [{**GOOD_OUTPUT, "name": "LABELS"}]},
            "output 'LABELS' is not an output of model 'digits' (CONFIDENCE, LABEL)",
            '"LABELS"',
        ),
    ],
)
def test_bad_case_files_are_located_at_the_value_at_fault(
    digits: tuple[Path, dict[str, TritonModel]], document: object, message: str, at: str
) -> None:
    model, triton_models = digits
    path = _write(model, "broken", document)
    with pytest.raises(CaseError) as error:
        _load(model, triton_models)
    assert len(error.value.diagnostics) == 1
    diagnostic = error.value.diagnostics[0]
    assert diagnostic.path == path
    assert message in f"{path.name}:{diagnostic.line}:{diagnostic.column}: {diagnostic.message}"
    assert diagnostic.line is not None and diagnostic.column is not None
    line = path.read_text().splitlines()[diagnostic.line - 1]
    assert line[diagnostic.column - 1 :].startswith(at)


def test_a_missing_input_is_located_at_the_inputs(tmp_path: Path) -> None:
    model = _two_input_model(tmp_path)
    path = _write_case(
        model, {"inputs": [_tensor("A", [4], [1, 2, 3, 4])], "outputs": [_tensor("SUM", [4], None)]}
    )
    with pytest.raises(CaseError, match=r"case\.json:2:13: gives no 'B': model 'add' requires every input"):
        load_cases(model, validate_model(ModelDir(model)).triton_models, "add")
    assert path.is_file()


def test_an_unbatched_model_takes_the_bare_dims(tmp_path: Path) -> None:
    model = _two_input_model(tmp_path)
    triton_models = validate_model(ModelDir(model)).triton_models
    _write_case(
        model,
        {
            "inputs": [_tensor("A", [1, 4], [1] * 4), _tensor("B", [4], [2] * 4)],
            "outputs": [_tensor("SUM", [4], None)],
        },
    )
    with pytest.raises(
        CaseError, match=r"shape \[1, 4\] does not match \[4\]: add does not batch \(no max_batch_size\)"
    ):
        load_cases(model, triton_models, "add")


def test_an_output_not_written_yet_loads_and_never_passes(tmp_path: Path) -> None:
    from packager.replay.compare import compare

    model = _two_input_model(tmp_path)
    _write_case(
        model,
        {
            "inputs": [_tensor("A", [4], [1] * 4), _tensor("B", [4], [2] * 4)],
            "outputs": [_tensor("SUM", [4], None)],
        },
    )
    (case,) = load_cases(model, validate_model(ModelDir(model)).triton_models, "add")
    (pending,) = case.outputs
    assert not pending.written and pending.shape == [4]
    (problem,) = compare(pending, np.zeros(4, dtype=np.float32))
    assert (
        problem
        == 'SUM: the case does not give the expected values yet (data is null); got "shape": [4], "data": [0.0, 0.0, 0.0, 0.0]'
    )


def test_fill_gives_every_value_of_a_tensor_at_once(tmp_path: Path) -> None:
    model = _two_input_model(tmp_path)
    _write_case(
        model,
        {
            "inputs": [
                {"name": "A", "datatype": "FP32", "shape": [4], "fill": 0.5},
                {"name": "B", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]},
            ],
            "outputs": [{"name": "SUM", "datatype": "FP32", "shape": [4], "fill": 2}],
        },
    )
    (case,) = load_cases(model, validate_model(ModelDir(model)).triton_models, "add")
    assert case.inputs[0].data.tolist() == [0.5] * 4 and case.inputs[0].data.dtype == np.float32
    assert case.outputs[0].written and case.outputs[0].data.tolist() == [2.0] * 4


ADD_CONFIG = """name: "add"
backend: "python"
input [ { name: "A" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "SUM" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def _two_input_model(parent: Path) -> Path:
    """A model directory like NVIDIA's add_sub: one python step, no batching, two inputs."""
    model = parent / "add"
    (model / "add" / "1").mkdir(parents=True)
    (model / "add" / "config.pbtxt").write_text(ADD_CONFIG)
    (model / "add" / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    (model / "model_version.txt").write_text("1\n")
    (model / "tests" / "cases").mkdir(parents=True)
    return model


def _tensor(name: str, shape: list[int], data: object) -> dict[str, object]:
    return {"name": name, "datatype": "FP32", "shape": shape, "data": data}


def _write_case(model: Path, document: dict[str, object]) -> Path:
    path = model / "tests" / "cases" / "case.json"
    path.write_text(json.dumps(document, indent=2))
    return path


# Decoupled models: a case lists the responses of the stream, in order.
def _out(value: int | None, datatype: str = "INT32") -> dict[str, object]:
    return {"name": "OUT", "datatype": datatype, "shape": [1], "data": None if value is None else [value]}


REPEAT_CASE = {
    "inputs": [{"name": "IN", "datatype": "INT32", "shape": [3], "data": [4, 5, 6]}],
    "responses": [{"outputs": [_out(4)]}, {"outputs": [_out(5)]}, {"outputs": [_out(6)]}],
}
PIPELINE_CONFIG = """name: "pipeline"
platform: "ensemble"
input [ { name: "VALUES" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "EACH" data_type: TYPE_INT32 dims: [ 1 ] } ]
ensemble_scheduling { step [ { model_name: "repeat" model_version: -1
  input_map { key: "IN" value: "VALUES" } output_map { key: "OUT" value: "EACH" } } ] }
"""


def _repeat(tmp_path: Path, document: object) -> tuple[Path, Path]:
    """The repeat model directory with one case, `document`; the model and the case file."""
    model = one_model_dir(tmp_path, "repeat", REPEAT, REPEAT_CONFIG)
    return model, _write(model, "stream", document)


def test_a_decoupled_models_case_lists_its_responses_in_order(tmp_path: Path) -> None:
    model, _ = _repeat(tmp_path, REPEAT_CASE)
    (case,) = load_cases(model, validate_model(ModelDir(model)).triton_models, "repeat")
    assert case.outputs == () and case.stream is not None and case.stream.written
    assert [[tensor.data.tolist() for tensor in response] for response in case.stream.responses] == [
        [[4]],
        [[5]],
        [[6]],
    ]
    assert case.stream.generate_problem is None, "a flat INT32 list is what generate_stream sends"


def test_responses_not_written_yet_load_and_an_empty_stream_is_a_stream(tmp_path: Path) -> None:
    model = one_model_dir(tmp_path, "square", SQUARE, SQUARE_CONFIG)
    zero = {"inputs": [{"name": "IN", "datatype": "INT32", "shape": [1], "data": [0]}], "responses": []}
    _write(model, "zero", zero)
    _write(model, "pending", {**zero, "responses": None})
    pending, empty = load_cases(model, validate_model(ModelDir(model)).triton_models, "square")
    assert pending.stream is not None and not pending.stream.written
    assert empty.stream is not None and empty.stream.written and empty.stream.responses == ()


@pytest.mark.parametrize(
    "document, message, at",
    [
        (
            {"inputs": REPEAT_CASE["inputs"], "outputs": [_out(4)]},
            "stream.json:16:14: repeat is decoupled (model_transaction_policy { decoupled: true }): it answers "
            'with a stream; give each response in order as "responses": [{"outputs": [...]}, ...], not "outputs"',
            "[",
        ),
        (
            {"inputs": REPEAT_CASE["inputs"]},
            'stream.json:1:1: needs "responses": [{"outputs": [...]}, ...], every response in order (null until '
            "written): repeat is decoupled",
            "{",
        ),
        (
            {**REPEAT_CASE, "responses": [{"outputs": [_out(4)]}, {"outputs": [_out(5, "FP32")]}]},
            "stream.json:35:23: response 1: output 'OUT' is INT32 in repeat's config, not FP32",
            '"FP32"',
        ),
        (
            {
                **REPEAT_CASE,
                "responses": [{"outputs": [_out(4)]}, {"outputs": [{**_out(5), "data": ["five"]}]}],
            },
            "stream.json:39:19: responses[1].outputs[0] data does not fit INT32: 'five' is not a number",
            "[",
        ),
        (
            {**REPEAT_CASE, "responses": [_out(4)]},
            'stream.json:17:5: responses[0] must be {"outputs": [...]}, the tensors of response 0',
            "{",
        ),
        (
            {**REPEAT_CASE, "responses": {"outputs": []}},
            'stream.json:16:16: responses must be a list, [{"outputs": [...]}, ...] (null until written)',
            "{",
        ),
    ],
)
def test_bad_decoupled_cases_are_located_at_the_value_at_fault(
    tmp_path: Path, document: object, message: str, at: str
) -> None:
    model, path = _repeat(tmp_path, document)
    report = validate_model(ModelDir(model))
    (diagnostic,) = report.diagnostics
    assert diagnostic.path == path and diagnostic.line is not None and diagnostic.column is not None
    assert f"{path.name}:{diagnostic.line}:{diagnostic.column}: {diagnostic.message}".startswith(message)
    assert path.read_text().splitlines()[diagnostic.line - 1][diagnostic.column - 1 :].startswith(at)


def test_responses_are_only_for_decoupled_models(tmp_path: Path) -> None:
    model = _two_input_model(tmp_path)
    inputs = [_tensor("A", [4], [1] * 4), _tensor("B", [4], [2] * 4)]
    path = _write_case(model, {"inputs": inputs, "responses": [{"outputs": [_tensor("SUM", [4], [3] * 4)]}]})
    with pytest.raises(CaseError) as raised:
        load_cases(model, validate_model(ModelDir(model)).triton_models, "add")
    (diagnostic,) = raised.value.diagnostics
    assert (diagnostic.path, diagnostic.line, diagnostic.column) == (path, 30, 16)
    assert diagnostic.message == '"responses" is for decoupled models; add sends one response: give "outputs"'


def test_an_ensemble_with_a_decoupled_step_streams_too(tmp_path: Path) -> None:
    model, _ = _repeat(tmp_path, {"model": "repeat", **REPEAT_CASE})
    (model / "pipeline" / "1").mkdir(parents=True)
    (model / "pipeline" / "config.pbtxt").write_text(PIPELINE_CONFIG)
    inputs = [{"name": "VALUES", "datatype": "INT32", "shape": [2], "data": [7, 8]}]
    path = _write(model, "through", {"inputs": inputs, "outputs": [{**_out(7), "name": "EACH"}]})
    (diagnostic,) = validate_model(ModelDir(model)).diagnostics
    assert (diagnostic.path, diagnostic.line) == (path, 15)
    assert diagnostic.message.startswith(
        "pipeline streams what its decoupled step 'repeat' sends: it answers"
    )


@pytest.mark.parametrize(
    "config, tensor, problem",
    [
        (REPEAT_CONFIG, {"shape": [3], "data": [1, 2, 3]}, None),
        (
            REPEAT_CONFIG.replace("TYPE_INT32, dims: [ -1 ]", "TYPE_INT32, dims: [ -1, -1 ]"),
            {"shape": [1, 3], "data": [1, 2, 3]},
            "input 'IN' has shape [1, 3], but generate_stream makes a flat list of 3 values no shape (two variable dims)",
        ),
        (
            "max_batch_size: 4\n" + REPEAT_CONFIG,
            {"shape": [1, 3], "data": [1, 2, 3]},
            None,
        ),
        (
            "max_batch_size: 4\n" + REPEAT_CONFIG,
            {"shape": [3, 1], "data": [1, 2, 3]},
            "input 'IN' has shape [3, 1], but generate_stream makes a flat list of 3 values [1, 3]",
        ),
        (
            REPEAT_CONFIG.replace(
                '{ name: "IN", data_type: TYPE_INT32', '{ name: "IN", data_type: TYPE_FP16'
            ),
            {"shape": [1], "data": [1.5], "datatype": "FP16"},
            "input 'IN' is FP16, which Triton's generate endpoints do not read from JSON",
        ),
    ],
)
def test_what_generate_stream_can_carry(
    tmp_path: Path, config: str, tensor: dict[str, object], problem: str | None
) -> None:
    """Triton's generate_stream takes each input as a flat JSON list and makes its shape from the config (a
    batch of 1 in front when the model batches, the variable dim set by the count): a case whose shape it
    would make otherwise, or that JSON cannot carry, is replayed over gRPC streaming only."""
    document = {"inputs": [{"name": "IN", "datatype": "INT32", **tensor}], "responses": None}
    model = one_model_dir(tmp_path, "repeat", REPEAT, config, {"case": document})
    (case,) = load_cases(model, validate_model(ModelDir(model)).triton_models, "repeat")
    assert case.stream is not None and case.stream.generate_problem == problem
