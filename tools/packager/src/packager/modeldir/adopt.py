"""`packager adopt`: an existing Triton model, or model repository, laid out as a model directory here.

It takes what users and NVIDIA's examples ship: one Triton model directory (`add_sub/config.pbtxt` with
`add_sub/1/model.py`, or `model.py` beside the config), or a model repository (a directory of them, such as
an ensemble and its steps, or NVIDIA's BLS examples: a python model that calls others by name); a python
model without a config.pbtxt (its `auto_complete_config` sets it) gets the one line Triton needs,
`backend: "python"`. Only what Triton loads is copied: each config, its version directories, its `warmup/`
and the label files it names; clients, notebooks and the rest are left where they are, and listed.
A requirements.txt becomes the model's, wired into every python step's EXECUTION_ENV_PATH. The model gets
a model_version.txt, a BUILD file, the replay test and a case template for its top model, whose outputs
are null until someone writes what the model must return (where Triton completes the top model's config,
the template waits for that config: `write_case_template`). The directory appears whole, or not at all.

The top model is the one requests go to: the one no other model calls (see `calls.entry_points`), or the
one `top` names when that does not settle it. SageMaker MME serves a repository's ensemble (and loads only
it and its steps), so a repository without one gets a one-step ensemble around the top model, named after
the model directory unless a Triton model already has that name (then `<name>_ensemble`). Where the top
model calls others by name (BLS), which MME would never load, a loader step goes in front of it in that
ensemble: a python model, written here, that loads them (`pb_utils.load_model`) when Triton loads it, unloads
them when it is unloaded, and passes each request on unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_encoding
from tritonclient.grpc import model_config_pb2

from packager.errors import PackagerError, UsageError
from packager.modeldir.calls import entry_points, unloaded_calls
from packager.modeldir.cases import CASES_DIR, example_inputs, example_tensor
from packager.modeldir.discovery import MODEL_VERSION_FILE, TRITON_CONFIG, name_problem, version_dirs
from packager.modeldir.model_config import (
    DEFAULT_PYTHON_FILE,
    ENSEMBLE,
    ENV_PATH_PARAMETER,
    ENV_PATH_VALUE,
    ConfigUnreadable,
    ModelConfig,
    ParsedConfig,
    TritonModel,
    enum_name,
    read_config,
)
from packager.modeldir.requirements import REQUIREMENTS_FILE
from packager.modeldir.scaffold import BUILD, TEST
from packager.modeldir.textproto_positions import FieldPositions

TEMPLATE_CASE = "example.json"
# What a python model without a config.pbtxt gets: Triton cannot tell its backend from a version
# directory's model.py alone everywhere, and the model-directory contract needs the file.
MINIMAL_CONFIG = 'backend: "python"\n'
TEMPLATE_VALUES = 16  # a template lists up to this many values of a tensor; a bigger one gets one `fill`
WRAPPER_SUFFIX = "_ensemble"
LOADER_SUFFIX = "_loader"
LOADED_SUFFIX = "_loaded"  # the loader's outputs, as ensemble tensors: each input, passed on
LOADER_HEADER = """\
# Written by `packager adopt`: loads the models {model} calls by name ({callees}), which SageMaker MME never
# loads (it loads the top-level ensemble and its steps only), and passes each request on to {model} unchanged.
"""
LOADER_CODE = '''"""Written by `packager adopt`: loads the models {model} calls by name when Triton loads this step (SageMaker
MME loads only the top-level ensemble and its steps), unloads them with it, and passes each request on."""

import triton_python_backend_utils as pb_utils

INPUTS = {inputs}


class TritonPythonModel:
    def initialize(self, args):
        self.loaded = []
        for model_name in {callees}:
            if not pb_utils.is_model_ready(model_name):
                pb_utils.load_model(model_name=model_name)
                self.loaded.append(model_name)

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [tensor for input_name in INPUTS if (tensor := pb_utils.get_input_tensor_by_name(request, input_name))]
            )
            for request in requests
        ]

    def finalize(self):
        for loaded_name in self.loaded:
            pb_utils.unload_model(loaded_name)
'''
WRAPPER_HEADER = """\
# Written by `packager adopt`: the top-level ensemble, the model SageMaker MME serves. It passes each
# request to {model} and returns what it answers.
"""
SKIPPED = {"__pycache__", ".ipynb_checkpoints", ".git"}
ENV_PARAMETER = f"""
# Added by `packager adopt`: this step runs in the environment built from the model's requirements.txt.
parameters: {{
  key: "{ENV_PATH_PARAMETER}"
  value: {{ string_value: "{ENV_PATH_VALUE}" }}
}}
"""
STEPS = """\
# Triton python-backend steps, adopted as they were written (`packager adopt`): Pants leaves their
# formatting and style alone until someone runs `./pants fmt models/{name}::` and drops skip_black and
# skip_ruff.
python_sources(name="steps", sources=["*/[0-9]*/*.py"], skip_mypy=True, skip_black=True, skip_ruff=True)"""


class AdoptionError(PackagerError):
    """The source is not a Triton model or model repository that can be adopted as it is."""


@dataclass(frozen=True)
class Adoption:
    """What `adopt` made: the model directory and what it did on the way."""

    path: Path
    triton_models: tuple[str, ...]
    top_model: str
    wrapped: str | None  # the model the ensemble adopt wrote passes requests to (None: it wrote none)
    loader: str | None  # the step it put in front of `wrapped` to load what that calls by name
    left_out: tuple[Path, ...]  # files of the source that no Triton model loads
    requirements: tuple[Path, ...]  # the requirements files it took
    wired: tuple[str, ...]  # python steps it gave EXECUTION_ENV_PATH
    case_template: (
        Path | None
    )  # None when the top model declares no inputs to fill, or Triton completes them, or Triton completes them


def adopt(source: Path, parent: Path, *, name: str | None = None, top: str | None = None) -> Adoption:
    """Lay out `source` (a Triton model directory or a model repository) as `parent/<name>`, with `top` (or
    the model no other calls) as the model requests go to."""
    if not source.is_dir():
        raise UsageError(f"{source}: not a directory; give a Triton model directory or a model repository")
    found = _triton_models(source)
    entry = _entry(source, found, top)
    chosen = name or entry
    problem = name_problem(chosen)
    if problem:
        raise UsageError(f"model name {chosen!r} {problem}; choose another with --name")
    wrapper = _wrapper_name(chosen, found) if len(found) > 1 and not found[entry].is_ensemble else None
    destination = parent / chosen
    if destination.exists():
        raise UsageError(f"{destination} already exists; choose another name with --name")
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{chosen}.adopt-", dir=parent))
    try:
        adoption = _lay_out(source, found, scratch, destination, _Entry(entry, wrapper))
        os.rename(scratch, destination)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return adoption


@dataclass(frozen=True)
class _Entry:
    """The model requests go to, and the ensemble adopt writes around it (None: it needs none)."""

    model: str
    wrapper: str | None

    @property
    def served(self) -> str:
        """The top-level model: the ensemble, where adopt writes one."""
        return self.wrapper or self.model


def _entry(source: Path, found: dict[str, TritonModel], top: str | None) -> str:
    """The model requests go to: `top`, or the one no other model calls (UsageError when that is not one)."""
    candidates = entry_points(found)
    if top is None:
        if len(candidates) == 1:
            return candidates[0]
        raise UsageError(
            f"{source}: holds several Triton models that no other calls ({', '.join(candidates or sorted(found))}); "
            "say which one requests go to with --top MODEL"
        )
    if top not in found:
        raise UsageError(f"--top {top}: not a Triton model of {source} ({', '.join(sorted(found))})")
    ensembles = [name for name in candidates if found[name].is_ensemble and name != top]
    if ensembles and not found[top].is_ensemble:
        raise UsageError(
            f"--top {top}: SageMaker MME serves {source}'s ensemble {ensembles[0]}; leave --top out"
        )
    return top


def _wrapper_name(chosen: str, found: dict[str, TritonModel]) -> str:
    """The name of the ensemble adopt writes: the model directory's, unless a Triton model has it."""
    for candidate in (chosen, f"{chosen}{WRAPPER_SUFFIX}"):
        if candidate not in found:
            return candidate
    raise UsageError(
        f"{chosen} and {chosen}{WRAPPER_SUFFIX} are both Triton models of the source; choose another --name"
    )


def _triton_models(source: Path) -> dict[str, TritonModel]:
    """The Triton models `source` holds, by the name Triton serves them under."""
    directories = [source] if _is_triton_model(source) else []
    directories = directories or sorted(
        entry for entry in source.iterdir() if entry.is_dir() and _is_triton_model(entry)
    )
    if not directories:
        raise UsageError(
            f"{source}: holds no {TRITON_CONFIG}, nor subdirectories with one; give a Triton model directory "
            f"(a {TRITON_CONFIG}, or a python model's {DEFAULT_PYTHON_FILE}) or a model repository"
        )
    found = {}
    for directory in directories:
        try:
            parsed = _read_or_minimal(directory)
        except ConfigUnreadable as error:
            raise AdoptionError(f"{error}; fix it before adopting") from None
        found[parsed.config.name or directory.name] = TritonModel(directory, parsed)
    return found


def _is_triton_model(directory: Path) -> bool:
    """A config.pbtxt, or a python model without one: model.py beside it or in a version directory."""
    if (directory / TRITON_CONFIG).is_file():
        return True
    return any(path.is_file() for path in (directory / DEFAULT_PYTHON_FILE, *_versioned_python(directory)))


def _versioned_python(directory: Path) -> list[Path]:
    return [path / DEFAULT_PYTHON_FILE for path in version_dirs(directory).values()]


def _read_or_minimal(directory: Path) -> ParsedConfig:
    """The model's config, or the minimal one it gets where it has none (at the path it will have)."""
    path = directory / TRITON_CONFIG
    if path.is_file():
        return read_config(path)
    config = ModelConfig()
    config.backend = "python"
    return ParsedConfig(path, config, FieldPositions(MINIMAL_CONFIG))


def _lay_out(
    source: Path, found: dict[str, TritonModel], root: Path, destination: Path, entry: _Entry
) -> Adoption:
    """Write the model directory into `root`, which becomes `destination`; what will be there."""
    left_out: list[Path] = []
    for triton_name, triton in sorted(found.items()):
        left_out.extend(_copy_triton_model(triton, root / triton_name))
    steps = dict(found)
    loader = None
    if entry.wrapper is not None:
        loader = _write_loader(root, entry, found)
        if loader is not None:
            steps[loader.name] = loader
        (root / entry.wrapper / "1").mkdir(parents=True)
        (root / entry.wrapper / "1" / ".gitkeep").write_text("")
        wrapper = wrapper_config(
            entry.wrapper, entry.model, model=found[entry.model], loader=loader.name if loader else None
        )
        (root / entry.wrapper / TRITON_CONFIG).write_text(wrapper)
    triton_dirs = {triton.directory for triton in found.values()}
    if source not in triton_dirs:  # a model repository: what lies beside its models stays behind
        left_out.extend(_others(source, taken=set()) - triton_dirs)
    requirements = _requirements(source, found)
    wired: list[str] = []
    if requirements:
        (root / REQUIREMENTS_FILE).write_text(_merged(requirements))
        for triton_name, triton in sorted(steps.items()):
            if triton.is_python and ENV_PATH_PARAMETER not in triton.config.parameters:
                with open(root / triton_name / TRITON_CONFIG, "a", encoding="utf-8") as config:
                    config.write(ENV_PARAMETER)
                wired.append(triton_name)
    (root / MODEL_VERSION_FILE).write_text("1\n")
    name = destination.name
    (root / "BUILD").write_text(BUILD.format(name=name, steps=STEPS.format(name=name)))
    (root / "tests").mkdir()
    (root / "tests" / "test_replay.py").write_text(TEST)
    laid_out = TritonModel(root / entry.model, found[entry.model].parsed)  # model.py in a version directory
    written = write_case_template(root, laid_out) if not laid_out.completion_reason else None
    template = destination / CASES_DIR / TEMPLATE_CASE if written is not None else None
    return Adoption(
        destination,
        tuple(sorted({*steps, entry.served})),
        entry.served,
        entry.model if entry.wrapper else None,
        loader.name if loader else None,
        tuple(sorted(left_out)),
        requirements,
        tuple(wired),
        template,
    )


def wrapper_config(name: str, model_name: str, *, model: TritonModel, loader: str | None = None) -> str:
    """config.pbtxt of an ensemble `name` with `model`'s inputs and outputs, which passes each request to it
    (streaming its responses when it is decoupled), through `loader` first where there is one."""
    source = model.config
    if not source.input or not source.output:
        raise AdoptionError(
            f"{model.parsed.path}: declares no inputs or outputs (does model.py's auto_complete_config set "
            f"them?); adopt writes the ensemble SageMaker MME serves from them: declare them, then adopt again"
        )
    lines = [WRAPPER_HEADER.format(model=model_name) + f"name: {_quoted(name)}", f'platform: "{ENSEMBLE}"']
    lines += [f"max_batch_size: {source.max_batch_size}"] * (source.max_batch_size > 0)
    lines += ["input [", ",\n".join(map(_tensor_line, source.input)), "]"]
    lines += ["output [", ",\n".join(map(_tensor_line, source.output)), "]"]
    lines += ["model_transaction_policy { decoupled: true }"] * source.model_transaction_policy.decoupled
    passed = {tensor.name: tensor.name + LOADED_SUFFIX * (loader is not None) for tensor in source.input}
    steps = [_step(loader, {t: t for t in passed}, passed)] if loader is not None else []
    outputs = {tensor.name: tensor.name for tensor in source.output}
    steps.append(_step(model_name, passed, outputs))
    lines += ["ensemble_scheduling {", "  step [", ",\n".join(steps), "  ]", "}"]
    return "\n".join(lines) + "\n"


def _step(model_name: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    """One ensemble step: `model_name`, its inputs and outputs mapped (model tensor -> ensemble tensor)."""
    maps = [f"      input_map {{ key: {_quoted(k)} value: {_quoted(v)} }}" for k, v in inputs.items()]
    maps += [f"      output_map {{ key: {_quoted(k)} value: {_quoted(v)} }}" for k, v in outputs.items()]
    body = [f"      model_name: {_quoted(model_name)}", "      model_version: -1", *maps]
    return "\n".join(["    {", *body, "    }"])


def _write_loader(root: Path, entry: _Entry, found: dict[str, TritonModel]) -> TritonModel | None:
    """The loader step in front of the top model, written under `root`, when the top model (or what it
    loads) calls by name models MME would not load; None when it calls none."""
    callees: set[str] = set()
    while more := unloaded_calls(entry.model, found, callees) & set(found) - callees:
        callees |= more
    if not callees:
        return None
    name = _free_name(f"{entry.model}{LOADER_SUFFIX}", {*found, entry.served})
    source = found[entry.model].config
    listed = tuple(sorted(callees))
    config = LOADER_HEADER.format(model=entry.model, callees=", ".join(listed))
    config += f'name: {_quoted(name)}\nbackend: "python"\n'
    config += f"max_batch_size: {source.max_batch_size}\n" * (source.max_batch_size > 0)
    config += "input [\n" + ",\n".join(map(_tensor_line, source.input)) + "\n]\n"
    config += "output [\n" + ",\n".join(map(_tensor_line, _as_outputs(source.input))) + "\n]\n"
    (root / name / "1").mkdir(parents=True)
    (root / name / TRITON_CONFIG).write_text(config)
    inputs = tuple(tensor.name for tensor in source.input)
    code = LOADER_CODE.format(model=entry.model, inputs=inputs, callees=listed)
    (root / name / "1" / "model.py").write_text(code)
    return TritonModel(root / name, read_config(root / name / TRITON_CONFIG))


def _as_outputs(inputs: Sequence[model_config_pb2.ModelInput]) -> list[model_config_pb2.ModelOutput]:
    """Outputs of the same names, types and shapes as `inputs`."""
    return [
        model_config_pb2.ModelOutput(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
        for tensor in inputs
    ]


def _free_name(wanted: str, taken: set[str]) -> str:
    """`wanted`, or `wanted_2`, `wanted_3`... whichever no Triton model has."""
    candidates = (wanted if number == 1 else f"{wanted}_{number}" for number in range(1, len(taken) + 2))
    return next(candidate for candidate in candidates if candidate not in taken)


def _tensor_line(tensor: model_config_pb2.ModelInput | model_config_pb2.ModelOutput) -> str:
    """One input or output of a config, on one line."""
    data_type = enum_name(model_config_pb2.DataType, tensor.data_type)
    dims = ", ".join(str(dim) for dim in tensor.dims)
    optional = ", optional: true" if getattr(tensor, "optional", False) else ""
    return f"  {{ name: {_quoted(tensor.name)}, data_type: {data_type}, dims: [ {dims} ]{optional} }}"


def _quoted(text: str) -> str:
    """A string as protobuf's text format writes it."""
    return '"' + text_encoding.CEscape(text.encode(), as_utf8=True) + '"'


def _copy_triton_model(triton: TritonModel, destination: Path) -> set[Path]:
    """Copy what Triton loads of one model; the files it left out."""
    source = triton.directory
    keep = {TRITON_CONFIG, "warmup", *(output.label_filename for output in triton.config.output)}
    versions = version_dirs(source)
    destination.mkdir()
    ignore = shutil.ignore_patterns(*SKIPPED)
    for entry in sorted(source.iterdir()):
        if entry.is_dir() and (entry.name in keep or entry in versions.values()):
            shutil.copytree(entry, destination / entry.name, ignore=ignore)
        elif entry.name in keep:
            shutil.copy2(entry, destination / entry.name)
    if not (source / TRITON_CONFIG).is_file():
        (destination / TRITON_CONFIG).write_text(MINIMAL_CONFIG)
    if not versions and triton.is_python and (source / triton.python_file).is_file():
        (destination / "1").mkdir()  # NVIDIA's examples ship model.py beside the config
        shutil.copy2(source / triton.python_file, destination / "1" / triton.python_file)
    elif not versions and triton.is_ensemble:
        (destination / "1").mkdir()  # git keeps no empty directory; Triton needs one
        (destination / "1" / ".gitkeep").write_text("")
    taken = keep | {str(number) for number in versions}
    if not versions and triton.is_python:
        taken.add(triton.python_file)
    return _others(source, taken)


def _others(directory: Path, taken: set[str]) -> set[Path]:
    """What `directory` holds beside the names `taken`, its requirements and what is never copied."""
    ignored = taken | SKIPPED | {REQUIREMENTS_FILE}
    return {entry for entry in directory.iterdir() if entry.name not in ignored}


def _requirements(source: Path, found: dict[str, TritonModel]) -> tuple[Path, ...]:
    """The requirements files of the source: at its root, and in each Triton model's directory."""
    candidates = [source / REQUIREMENTS_FILE, *(t.directory / REQUIREMENTS_FILE for t in found.values())]
    return tuple(dict.fromkeys(path for path in candidates if path.is_file()))


def _merged(paths: tuple[Path, ...]) -> str:
    """One requirements.txt from several: each line once, in the order first met."""
    if len(paths) == 1:
        return paths[0].read_text(encoding="utf-8")
    lines = [line for path in paths for line in path.read_text(encoding="utf-8").splitlines()]
    return "\n".join(dict.fromkeys(line for line in lines if line.strip())) + "\n"


def case_template(model: TritonModel) -> dict[str, object] | None:
    """A case for `model` from its config (see `example_tensor`): zeros in (one `fill` value for a tensor
    of more than TEMPLATE_VALUES), each output null until written (a decoupled model's responses: null until
    written). None when the config declares no inputs
    to fill."""
    config = model.loaded_config
    if not config.input:
        return None
    batching = config.max_batch_size > 0
    inputs = [_compact(tensor) for tensor in example_inputs(config)]
    filled = " (`fill` gives every element of a tensor one value; write `data` instead)" * any(
        "fill" in tensor for tensor in inputs
    )
    if config.model_transaction_policy.decoupled:
        expected: dict[str, object] = {"responses": None}
    else:
        expected = {"outputs": [example_tensor(spec, batching, filled=False) for spec in config.output]}
    return {
        "description": f"written by `packager adopt`: set the inputs{filled}, then write what the model must "
        "return in each output's data (null until then; `packager replay` shows what it returns)",
        "inputs": inputs,
        **expected,
    }


def _compact(tensor: dict[str, object]) -> dict[str, object]:
    """A template's tensor: its data listed when short, else the one value every element takes (`fill`)."""
    data = tensor["data"]
    if not isinstance(data, list) or len(data) <= TEMPLATE_VALUES:
        return tensor
    return {**{key: value for key, value in tensor.items() if key != "data"}, "fill": data[0]}


def write_case_template(model_dir: Path, model: TritonModel) -> Path | None:
    """Write `model`'s case template (from the config Triton loads) into the model directory's cases;
    where, or None when its config declares no inputs to fill."""
    case = case_template(model)
    if case is None:
        return None
    path = model_dir / CASES_DIR / TEMPLATE_CASE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_case(case))
    return path


def render_case(case: dict[str, object]) -> str:
    """A case document as JSON, one tensor per line."""
    lines = []
    for key, value in case.items():
        if isinstance(value, list):
            tensors = ",\n".join(f"    {json.dumps(tensor)}" for tensor in value)
            lines.append(f"  {json.dumps(key)}: [\n{tensors}\n  ]")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"
