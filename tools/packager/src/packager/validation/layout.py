"""Rules on the files of a model directory: version file, names, symlinks, DVC pointers, the lock of its
requirements, and its test cases."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

from packager.modeldir import (
    ENV_PATH_PARAMETER,
    ENV_PATH_VALUE,
    REQUIREMENTS_FILE,
    TRITON_CONFIG,
    CaseError,
    ConfigUnreadable,
    Diagnostic,
    ModelDir,
    RequirementsError,
    TritonModel,
    env_path,
    load_cases,
    lock_problems,
    name_problem,
    parse_requirements,
    read_text,
    top_model,
    version_dirs,
)

VERSION = re.compile(r"\s*([1-9][0-9]*)\s*")
MAX_VERSION_DIGITS = 18  # what a signed 64-bit integer always holds
MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")


def read_model_version(model: ModelDir) -> tuple[int | None, list[Diagnostic]]:
    """The model's version from model_version.txt, or the problems that prevent reading one."""
    path = model.version_file
    try:
        text = read_text(path, "model-version")
    except ConfigUnreadable as error:
        return None, [error.diagnostic]
    match = VERSION.fullmatch(text)
    if match and len(match.group(1)) > MAX_VERSION_DIGITS:
        shown = match.group(1)[:20]
        message = f"version {shown}... is too large: a version has at most {MAX_VERSION_DIGITS} digits"
        return None, [Diagnostic(path, 1, 1, message, "model-version")]
    if match:
        return int(match.group(1)), []
    shown = text.strip()[:40]
    message = f"must hold one positive integer without leading zeros, such as 1; found {shown!r}"
    return None, [Diagnostic(path, 1, 1, message, "model-version")]


def check_names(model: ModelDir) -> Iterator[Diagnostic]:
    """Model and Triton model names are safe for a tarball name, an S3 key and a URL."""
    problem = name_problem(model.name)
    if problem:
        yield Diagnostic(
            model.path, None, None, f"model name {model.name!r} {problem}; rename the directory", "name"
        )
    for directory in model.triton_model_dirs():
        problem = name_problem(directory.name)
        if problem:
            message = f"Triton model name {directory.name!r} {problem}; rename the directory"
            yield Diagnostic(directory, None, None, message, "name")


def check_triton_model_dirs(model: ModelDir) -> Iterator[Diagnostic]:
    """The model directory holds Triton models, each with at least one numeric version directory."""
    triton_dirs = model.triton_model_dirs()
    for directory in model.subdirectories():
        if directory not in triton_dirs and version_dirs(directory):
            message = (
                f"has version directories but no {TRITON_CONFIG}; add one (Triton cannot load it without)"
            )
            yield Diagnostic(directory, None, None, message, "triton-model")
    if (model.path / TRITON_CONFIG).is_file():
        message = (
            f"is a Triton model's config at the model directory's root; nest the model one level deeper "
            f"({model.name}/{model.name}/{TRITON_CONFIG}, {model.name}/{model.name}/1/), "
            f"or run `packager adopt <path>` to lay it out"
        )
        yield Diagnostic(model.path / TRITON_CONFIG, None, None, message, "triton-model")
    elif not triton_dirs:
        message = f"holds no Triton model (a subdirectory with a {TRITON_CONFIG})"
        yield Diagnostic(model.path, None, None, message, "triton-model")
    for directory in triton_dirs:
        if not version_dirs(directory):
            message = "has no version directory (such as 1/); Triton loads nothing without one"
            zero_padded = sorted(entry.name for entry in directory.iterdir() if entry.name.isdigit())
            if zero_padded:
                message += f" (it ignores {', '.join(zero_padded)}: version numbers have no leading zeros)"
            else:
                message += " (for an ensemble, an empty 1/ holding a .gitkeep)"
            yield Diagnostic(directory, None, None, message, "version-dir")


def check_symlinks(model: ModelDir) -> Iterator[Diagnostic]:
    """No symlink leaves the model directory or dangles: the packaged model would not hold its target."""
    root = model.path.resolve()
    for directory, subdirs, files in os.walk(model.path):
        for name in sorted(subdirs + files):
            link = Path(directory) / name
            if not link.is_symlink():
                continue
            target = link.resolve()
            if not target.exists():
                message = f"symlink to {os.readlink(link)} dangles; remove it or restore its target"
                yield Diagnostic(link, None, None, message, "symlink")
            elif not target.is_relative_to(root):
                message = (
                    f"symlink leaves the model directory (to {target}); "
                    "the packaged model would not hold it: copy the file into the model directory"
                )
                yield Diagnostic(link, None, None, message, "symlink")


def check_dvc_pointers(model: ModelDir) -> Iterator[Diagnostic]:
    """Every `*.dvc` pointer parses and names a file beside it, with an md5 to fetch it by."""
    for directory, subdirs, files in os.walk(model.path):
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        for name in sorted(files):
            if name.endswith(".dvc"):
                yield from _check_dvc_pointer(Path(directory) / name)


def _check_dvc_pointer(path: Path) -> Iterator[Diagnostic]:
    root: yaml.Node | None = None
    try:
        text = read_text(path, "dvc-pointer")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except ConfigUnreadable as error:
        yield error.diagnostic
        return
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        problem = getattr(error, "problem", None) or str(error)
        yield Diagnostic(path, line, column, f"is not a valid DVC pointer (YAML: {problem})", "dvc-pointer")
        return
    except RecursionError:
        yield Diagnostic(
            path, None, None, "is not a valid DVC pointer (YAML: nests too deeply)", "dvc-pointer"
        )
        return
    except ValueError as error:  # a value its tag cannot hold: a date 2001-13-45, an int of 5000 digits
        problem = str(error).split(";")[0]
        message = f"is not a valid DVC pointer (YAML: {problem})"
        yield Diagnostic(path, *_unreadable_scalar(root), message, "dvc-pointer")
        return
    outs = document.get("outs") if isinstance(document, dict) else None
    if not isinstance(outs, list) or not outs:
        message = "is not a DVC pointer: it has no 'outs' list; recreate it with `dvc add <file>`"
        yield Diagnostic(path, 1, 1, message, "dvc-pointer")
        return
    fix = "recreate the pointer with `dvc add <file>` next to the file"
    for index, out in enumerate(outs):
        where = f"outs[{index}]"
        if not isinstance(out, dict) or not isinstance(out.get("path"), str):
            yield Diagnostic(
                path, *_yaml_position(root, "outs", index), f"{where} has no 'path'; {fix}", "dvc-pointer"
            )
            continue
        target = out["path"]
        if "/" in target or "\\" in target or target in ("", ".", ".."):
            message = (
                f"{where} path {target!r} must name a file beside the pointer, not another directory; {fix}"
            )
            yield Diagnostic(path, *_yaml_position(root, "outs", index, "path"), message, "dvc-pointer")
        md5 = out.get("md5")
        if not isinstance(md5, str) or not MD5.fullmatch(md5):
            message = f"{where} ({target}) has no valid md5, so DVC cannot fetch it; {fix}"
            yield Diagnostic(path, *_yaml_position(root, "outs", index, "md5"), message, "dvc-pointer")


def _unreadable_scalar(root: yaml.Node | None) -> tuple[int | None, int | None]:
    """1-based line and column of the first scalar, in document order, that YAML resolves to a type but
    cannot construct as one."""
    loader = yaml.SafeLoader("")
    pending = [root] if root is not None else []
    while pending:
        node = pending.pop()
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node)
            except (ValueError, yaml.YAMLError):
                return node.start_mark.line + 1, node.start_mark.column + 1
        elif isinstance(node, yaml.MappingNode):
            pending.extend(reversed([item for pair in node.value for item in pair]))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(reversed(node.value))
    return None, None


def _yaml_position(node: yaml.Node | None, *path: str | int) -> tuple[int | None, int | None]:
    """1-based line and column of the YAML value at `path`, or of the deepest node written on the way."""
    for step in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            child = node.value[step]
        if child is None:
            break
        node = child
    if node is None:
        return None, None
    return node.start_mark.line + 1, node.start_mark.column + 1


def check_requirements_lock(
    model: ModelDir, triton_models: Mapping[str, TritonModel], all_read: bool = True
) -> list[Diagnostic]:
    """A model whose steps load an environment lists its packages and has a current lock of them; one
    whose steps load none has no requirements that would go unused (unknown while a config is unread:
    `all_read` False)."""
    if any(env_path(triton) is not None for triton in triton_models.values()):
        return lock_problems(model.path)
    return _unused_requirements(model, triton_models) if all_read else []


def _unused_requirements(model: ModelDir, triton_models: Mapping[str, TritonModel]) -> list[Diagnostic]:
    path = model.path / REQUIREMENTS_FILE
    line = _first_requirement(path)
    if line is None:
        return []
    steps = sorted(name for name, triton in triton_models.items() if triton.is_python)
    if not steps:
        message = "lists packages, but the model has no python step to load them: remove it"
    else:
        message = (
            f"lists packages, but no python step loads them ({', '.join(steps)} would run on the server's own "
            f"Python): add to each step's {TRITON_CONFIG}: "
            f'parameters: {{ key: "{ENV_PATH_PARAMETER}" value: {{ string_value: "{ENV_PATH_VALUE}" }} }}'
        )
    return [Diagnostic(path, line, 1, message, "requirements")]


def _first_requirement(path: Path) -> int | None:
    """The line of the first thing `path` lists (1 when it does not parse), or None when it lists nothing."""
    if not path.is_file():
        return None
    try:
        lines = parse_requirements(path)
    except (RequirementsError, UnicodeDecodeError):
        return 1
    return lines[0].number if lines else None


def check_cases(model: ModelDir, triton_models: Mapping[str, TritonModel]) -> list[Diagnostic]:
    """Every case file reads, and fits the config of the model it calls."""
    try:
        load_cases(model.path, triton_models, top_model(triton_models))
    except CaseError as error:
        return error.diagnostics
    return []
