"""`packager adopt`: an existing Triton model, or model repository, laid out as a model directory here.

It takes what users and NVIDIA's examples ship: one Triton model directory (`add_sub/config.pbtxt` with
`add_sub/1/model.py`, or `model.py` beside the config), or a model repository (a directory of them, such as
an ensemble and its steps); a python model without a config.pbtxt (its `auto_complete_config` sets it)
gets the one line Triton needs, `backend: "python"`. Only what Triton loads is copied: each config, its
version directories, its `warmup/` and the label files it names; clients, notebooks and the rest are left
where they are, and listed.
A requirements.txt becomes the model's, wired into every python step's EXECUTION_ENV_PATH. The model gets
a model_version.txt, a BUILD file, the replay test and a case template for its top model, whose outputs
are null until someone writes what the model must return (where Triton completes the top model's config,
the template waits for that config: `write_case_template`). The directory appears whole, or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packager.errors import PackagerError, UsageError
from packager.modeldir.cases import CASES_DIR, example_inputs, example_tensor
from packager.modeldir.discovery import MODEL_VERSION_FILE, TRITON_CONFIG, name_problem, version_dirs
from packager.modeldir.model_config import (
    DEFAULT_PYTHON_FILE,
    ENV_PATH_PARAMETER,
    ENV_PATH_VALUE,
    ConfigUnreadable,
    ModelConfig,
    ParsedConfig,
    TritonModel,
    read_config,
    top_model,
)
from packager.modeldir.textproto_positions import FieldPositions
from packager.modeldir.requirements import REQUIREMENTS_FILE
from packager.modeldir.scaffold import BUILD, TEST

TEMPLATE_CASE = "example.json"
# What a python model without a config.pbtxt gets: Triton cannot tell its backend from a version
# directory's model.py alone everywhere, and the model-directory contract needs the file.
MINIMAL_CONFIG = 'backend: "python"\n'
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
# formatting alone until someone runs `./pants fmt models/{name}::` and drops skip_black.
python_sources(name="steps", sources=["*/[0-9]*/*.py"], skip_mypy=True, skip_black=True)"""


class AdoptionError(PackagerError):
    """The source is not a Triton model or model repository that can be adopted as it is."""


@dataclass(frozen=True)
class Adoption:
    """What `adopt` made: the model directory and what it did on the way."""

    path: Path
    triton_models: tuple[str, ...]
    top_model: str
    left_out: tuple[Path, ...]  # files of the source that no Triton model loads
    requirements: tuple[Path, ...]  # the requirements files it took
    wired: tuple[str, ...]  # python steps it gave EXECUTION_ENV_PATH
    case_template: Path | None  # None when the top model declares no inputs to fill, or Triton completes them


def adopt(source: Path, parent: Path, name: str | None = None) -> Adoption:
    """Lay out `source` (a Triton model directory or a model repository) as `parent/<name>`."""
    if not source.is_dir():
        raise UsageError(f"{source}: not a directory; give a Triton model directory or a model repository")
    found = _triton_models(source)
    chosen = name or top_model(found)
    problem = name_problem(chosen)
    if problem:
        raise UsageError(f"model name {chosen!r} {problem}; choose another with --name")
    destination = parent / chosen
    if destination.exists():
        raise UsageError(f"{destination} already exists; choose another name with --name")
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{chosen}.adopt-", dir=parent))
    try:
        adoption = _lay_out(source, found, scratch, destination)
        os.rename(scratch, destination)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return adoption


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


def _lay_out(source: Path, found: dict[str, TritonModel], root: Path, destination: Path) -> Adoption:
    """Write the model directory into `root`, which becomes `destination`; what will be there."""
    left_out: list[Path] = []
    for triton_name, triton in sorted(found.items()):
        left_out.extend(_copy_triton_model(triton, root / triton_name))
    triton_dirs = {triton.directory for triton in found.values()}
    if source not in triton_dirs:  # a model repository: what lies beside its models stays behind
        left_out.extend(_others(source, taken=set()) - triton_dirs)
    requirements = _requirements(source, found)
    wired: list[str] = []
    if requirements:
        (root / REQUIREMENTS_FILE).write_text(_merged(requirements))
        for triton_name, triton in sorted(found.items()):
            if triton.is_python and ENV_PATH_PARAMETER not in triton.config.parameters:
                with open(root / triton_name / TRITON_CONFIG, "a", encoding="utf-8") as config:
                    config.write(ENV_PARAMETER)
                wired.append(triton_name)
    (root / MODEL_VERSION_FILE).write_text("1\n")
    name = destination.name
    (root / "BUILD").write_text(BUILD.format(name=name, steps=STEPS.format(name=name)))
    (root / "tests").mkdir()
    (root / "tests" / "test_replay.py").write_text(TEST)
    top = top_model(found)
    laid_out = TritonModel(root / top, found[top].parsed)  # where model.py now is, in a version directory
    written = write_case_template(root, laid_out) if not laid_out.completion_reason else None
    template = destination / CASES_DIR / TEMPLATE_CASE if written is not None else None
    return Adoption(
        destination, tuple(sorted(found)), top, tuple(sorted(left_out)), requirements, tuple(wired), template
    )


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
    """A case for `model` from its config (see `example_tensor`): zeros in, each output null until
    written. None when the config declares no inputs to fill."""
    config = model.loaded_config
    if not config.input:
        return None
    batching = config.max_batch_size > 0
    return {
        "description": "written by `packager adopt`: set the inputs, then write what the model must return "
        "in each output's data (null until then; `packager replay` shows what it returns)",
        "inputs": example_inputs(config),
        "outputs": [example_tensor(spec, batching, filled=False) for spec in config.output],
    }


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
