"""Model discovery and the model-directory contract.

A *model directory* is any directory holding `model_version.txt`; it is the unit that is validated,
tested, packaged and released. Inside it, every subdirectory holding `config.pbtxt` is a *Triton model*
(a step or an ensemble), whose numeric subdirectories are its versions. Other files and directories
(`tests/`, `requirements.txt`, a training script, BUILD) travel beside them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UsageError

MODEL_VERSION_FILE = "model_version.txt"
TRITON_CONFIG = "config.pbtxt"
MODELS_DIR = "models"
VERSION_DIR = re.compile(r"0|[1-9][0-9]*")
SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
REPO_MARKERS = ("packager.toml", "pants.toml")
# Subdirectories of a model directory that are never Triton models.
NOT_TRITON_MODELS = frozenset({"tests", "__pycache__"})


@dataclass(frozen=True)
class ModelDir:
    """A model directory (the unit of packaging), by its absolute path."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(os.path.abspath(self.path)))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def version_file(self) -> Path:
        return self.path / MODEL_VERSION_FILE

    def subdirectories(self) -> list[Path]:
        """Subdirectories that may hold Triton models (hidden ones and `tests/` excluded), sorted."""
        return [
            entry
            for entry in _sorted_dirs(self.path)
            if not entry.name.startswith(".") and entry.name not in NOT_TRITON_MODELS
        ]

    def triton_model_dirs(self) -> list[Path]:
        """The Triton model directories: subdirectories holding config.pbtxt, sorted by name."""
        return [entry for entry in self.subdirectories() if (entry / TRITON_CONFIG).is_file()]


def name_problem(name: str) -> str | None:
    """Why `name` cannot be part of a tarball name, an S3 key and a URL, or None when it can."""
    if not SAFE_NAME.fullmatch(name):
        return "may hold only letters, digits, '_', '-' and '.'"
    if ".." in name:
        return "must not contain '..'"
    return None


def version_dirs(triton_model_dir: Path) -> dict[int, Path]:
    """The version directories of a Triton model, by number (Triton ignores names with leading zeros)."""
    return {
        int(entry.name): entry
        for entry in _sorted_dirs(triton_model_dir)
        if VERSION_DIR.fullmatch(entry.name)
    }


def _sorted_dirs(path: Path) -> list[Path]:
    return sorted(entry for entry in path.iterdir() if entry.is_dir() and not entry.is_symlink())


def find_repo_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` that holds packager.toml or pants.toml."""
    for directory in (start, *start.parents):
        if any((directory / marker).is_file() for marker in REPO_MARKERS):
            return directory
    return None


def is_model_dir(path: Path) -> bool:
    return (path / MODEL_VERSION_FILE).is_file()


def models_under(path: Path) -> list[ModelDir]:
    """Every model directory at or below `path` (not looking inside model directories), sorted."""
    if is_model_dir(path):
        return [ModelDir(path)]
    found: list[ModelDir] = []
    for directory, subdirs, _ in os.walk(path):
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        if is_model_dir(Path(directory)):
            found.append(ModelDir(Path(directory)))
            subdirs.clear()
    return found


def discover_models(args: Sequence[str], root: Path | None) -> list[ModelDir]:
    """Resolve command-line arguments (model names under models/, or paths) into model directories.

    With no arguments, every model under the repository's `models/`. Raises UsageError for an argument
    that names no model.
    """
    if not args:
        if root is None:
            raise UsageError(
                "not inside a model monorepo (no packager.toml or pants.toml above the current directory): "
                "give the paths of the model directories"
            )
        models = models_under(root / MODELS_DIR) if (root / MODELS_DIR).is_dir() else []
        if not models:
            raise UsageError(
                f"no models under {root / MODELS_DIR} (a model is a directory holding {MODEL_VERSION_FILE})"
            )
        return models
    return _unique(model for arg in args for model in _resolve(arg, root))


def _resolve(arg: str, root: Path | None) -> list[ModelDir]:
    looks_like_path = os.sep in arg or arg.startswith(".") or (os.altsep is not None and os.altsep in arg)
    if not looks_like_path and root is not None and is_model_dir(root / MODELS_DIR / arg):
        return [ModelDir(root / MODELS_DIR / arg)]
    path = Path(arg)
    if path.is_dir():
        found = models_under(path)
        if not found:
            raise UsageError(f"{arg}: no model here (a model is a directory holding {MODEL_VERSION_FILE})")
        return found
    if looks_like_path or path.exists():
        raise UsageError(f"{arg}: not a directory")
    raise UsageError(f"{arg}: no such model{_available(root)}")


def _available(root: Path | None) -> str:
    if root is None or not (root / MODELS_DIR).is_dir():
        return " (and not a directory)"
    names = [model.name for model in models_under(root / MODELS_DIR)]
    return f" under {root / MODELS_DIR} (available: {', '.join(names) or 'none'})"


def _unique(models: Iterable[ModelDir]) -> list[ModelDir]:
    seen: dict[Path, ModelDir] = {}
    for model in models:
        seen.setdefault(model.path.resolve(), model)
    return list(seen.values())
