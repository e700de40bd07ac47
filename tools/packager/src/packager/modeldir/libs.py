"""Shared libraries: code under the monorepo's `libs/` that python steps import.

A step's `model.py` (and what it imports in turn) names top-level packages or modules; those found in
`libs/` are packed beside the step's `model.py` in every version directory — Triton puts a version
directory on the step's `sys.path` — so each artifact carries exactly the shared code it runs, and a
change to it changes the artifact. Pants sees the same imports, so a change under `libs/` marks every
model whose steps use it.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from packager.errors import PackagerError
from packager.modeldir.discovery import find_repo_root
from packager.modeldir.model_config import TritonModel

LIBS_DIR = "libs"


@dataclass(frozen=True)
class Library:
    """A package (a directory with `__init__.py`) or a module file under libs/."""

    name: str
    path: Path

    def files(self) -> Iterator[tuple[str, Path]]:
        """Its files, by their path relative to where it is packed (`modelkit/onnx.py`), sorted."""
        if self.path.is_file():
            yield self.path.name, self.path
            return
        for directory, subdirectories, names in os.walk(self.path):
            subdirectories[:] = sorted(name for name in subdirectories if name != "__pycache__")
            for name in sorted(names):
                if not name.endswith(".pyc"):
                    path = Path(directory) / name
                    yield path.relative_to(self.path.parent).as_posix(), path


def libraries_dir(model_path: Path) -> Path | None:
    """The monorepo's libs/ above a model directory, if there is one."""
    root = find_repo_root(model_path)
    return root / LIBS_DIR if root is not None and (root / LIBS_DIR).is_dir() else None


def shared_libraries(version_dir: Path, libs: Path | None) -> list[Library]:
    """The libraries under `libs` the python files of a version directory import, directly or through
    each other, sorted by name."""
    if libs is None:
        return []
    available = _available(libs)
    found: dict[str, Library] = {}
    pending = [path for path in sorted(version_dir.glob("*.py"))]
    while pending:
        for name in sorted(_imported(pending.pop()) & set(available)):
            if name not in found:
                found[name] = available[name]
                pending.extend(path for _, path in found[name].files() if path.suffix == ".py")
    return [found[name] for name in sorted(found)]


def _available(libs: Path) -> dict[str, Library]:
    libraries = {}
    for entry in sorted(libs.iterdir()):
        if entry.is_dir() and (entry / "__init__.py").is_file():
            libraries[entry.name] = Library(entry.name, entry)
        elif entry.suffix == ".py" and entry.stem != "__init__":
            libraries[entry.stem] = Library(entry.stem, entry)
    return libraries


def _imported(source: Path) -> set[str]:
    """The top-level names a Python file imports absolutely (nothing for a file that does not parse:
    validation reports that)."""
    try:
        tree = ast.parse(source.read_bytes(), str(source))
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


class LibraryError(PackagerError):
    """A shared library cannot be packed where a step needs it."""


def library_files(triton: TritonModel, libs: Path | None) -> Iterator[tuple[str, Path]]:
    """Where every shared-library file a python step needs goes, relative to its Triton model directory
    (`1/modelkit/onnx.py`), and the file; sorted."""
    if libs is None or not triton.is_python:
        return
    for _, version_dir in sorted(triton.versions().items()):
        for library in shared_libraries(version_dir, libs):
            for relative, path in library.files():
                placed = f"{version_dir.name}/{relative}"
                if (triton.directory / placed).exists():
                    raise LibraryError(
                        f"{triton.directory / placed}: also in {libs}; a step's own file cannot shadow a shared "
                        "library: rename one of them"
                    )
                yield placed, path


def model_libraries(triton_models: Iterable[TritonModel], libs: Path | None) -> list[Library]:
    """Every library some python step of a model imports, once each, sorted by name."""
    found = {
        library.name: library
        for triton in triton_models
        if triton.is_python
        for version_dir in triton.versions().values()
        for library in shared_libraries(version_dir, libs)
    }
    return [found[name] for name in sorted(found)]
