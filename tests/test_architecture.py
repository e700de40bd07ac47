"""The packager's architecture, checked: stages import only from stages below them, the CLI uses only
the public names each stage's `__init__` documents, and every registry line names a real backend."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import packager
from packager.environments import ENV_BUILDERS
from packager.registry import Registry
from packager.release.stores import STORES
from packager.triton import LAUNCHERS

SOURCE = Path(packager.__file__).parent
# Bottom to top: a module may import from its own stage and the stages before it, never after.
STAGES = [
    (
        "foundation",
        {
            "errors",
            "settings",
            "registry",
            "cache",
            "subprocesses",
            "archives",
            "tables",
            "partials",
            "scratch",
            "toml_positions",
            "reporting",
        },
    ),
    ("modeldir", {"modeldir"}),
    ("validation", {"validation"}),
    ("environments", {"environments"}),
    ("preflight", {"preflight"}),
    ("artifacts", {"artifacts"}),
    ("triton", {"triton"}),
    ("replay", {"replay"}),
    ("release", {"release"}),
    ("endpoint", {"endpoint"}),
    ("loadtest", {"loadtest"}),
    ("pipeline", {"pipeline"}),
    ("ci", {"ci"}),
    ("app", {"config", "workspace", "testing", "cli", "__main__"}),
]
SUBPACKAGES = [
    "modeldir",
    "validation",
    "environments",
    "artifacts",
    "triton",
    "replay",
    "release",
    "endpoint",
    "loadtest",
    "pipeline",
    "ci",
]


def _stage(module: str) -> int:
    """The stage index of a dotted module name under `packager` (the package itself is foundation)."""
    parts = module.split(".")
    assert parts[0] == "packager", module
    if len(parts) == 1:
        return 0
    for index, (_, members) in enumerate(STAGES):
        if parts[1] in members:
            return index
    raise AssertionError(f"{module} belongs to no stage: add it to STAGES")


def _module_name(path: Path) -> str:
    relative = path.relative_to(SOURCE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """Every `packager` import in a file, anywhere in it: (line, module, imported names)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "packager":
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend(
                (node.lineno, alias.name, [])
                for alias in node.names
                if alias.name.split(".")[0] == "packager"
            )
    return found


def _targets(module: str, names: list[str]) -> list[str]:
    """The modules an import reaches: `from packager import x` names a submodule or a package attribute."""
    if module != "packager":
        return [module]
    return [
        f"packager.{name}" for name in names if (SOURCE / name).is_dir() or (SOURCE / f"{name}.py").is_file()
    ]


MODULES = sorted(SOURCE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: _module_name(path))
def test_no_module_imports_from_a_stage_above_it(path: Path) -> None:
    importer = _module_name(path)
    upward = [
        f"line {line}: {module} ({STAGES[_stage(module)][0]})"
        for line, module, names in _imports(path)
        for target in _targets(module, names)
        if _stage(target) > _stage(importer)
    ]
    assert not upward, f"{importer} ({STAGES[_stage(importer)][0]}) imports from above: {upward}"


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_stage_documents_its_public_names(name: str) -> None:
    stage = importlib.import_module(f"packager.{name}")
    assert stage.__doc__ and "Public:" in stage.__doc__, f"packager.{name} says which names are public"
    public = stage.__doc__.split("Public:", 1)[1]
    exported = getattr(stage, "__all__", [name for name in vars(stage) if not name.startswith("_")])
    undocumented = [item for item in exported if item not in public]
    assert not undocumented, f"packager.{name} exports names its docstring does not list: {undocumented}"


@pytest.mark.parametrize("path", sorted((SOURCE / "cli").glob("*.py")), ids=lambda path: path.name)
def test_the_cli_imports_only_public_names(path: Path) -> None:
    for line, module, names in _imports(path):
        if module == "packager" or module.split(".")[1] not in SUBPACKAGES:
            continue  # a single-module stage (preflight, workspace, tables, ...) is public as a whole
        assert module.count(".") == 1, f"cli/{path.name}:{line} reaches into {module}; import from its stage"
        public = getattr(importlib.import_module(module), "__all__", [])
        private = [name for name in names if name not in public]
        assert (
            not private
        ), f"cli/{path.name}:{line} imports {private} from {module}, which does not export them"


@pytest.mark.parametrize(
    "registry", [ENV_BUILDERS, LAUNCHERS, STORES], ids=lambda registry: registry.plug_point
)
def test_every_registry_line_names_a_real_factory(registry: Registry[object]) -> None:
    for name in registry.names():
        assert callable(registry.factory(name)), f"{registry.plug_point} {name!r}"
    with pytest.raises(Exception, match=f"no {registry.plug_point} 'nonexistent' \\(known: "):
        registry.factory("nonexistent")


def test_the_changelog_names_the_packagers_version() -> None:
    """A release moves `__version__` and gives its changes a section of that version in CHANGELOG.md."""
    changelog = (Path(__file__).parent.parent / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## (\d+\.\d+\.\d+)", changelog, re.MULTILINE)
    assert versions and versions[0] == packager.__version__, f"CHANGELOG.md's newest is {versions[:1]}"


def _positional(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    names = [argument.arg for argument in function.args.posonlyargs + function.args.args]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


@pytest.mark.parametrize("path", MODULES, ids=lambda path: _module_name(path))
def test_public_functions_take_at_most_three_positional_parameters(path: Path) -> None:
    """Past the first one or two, a parameter is keyword-only: a call says what each argument is."""
    crowded = [
        f"line {node.lineno}: {node.name}({', '.join(_positional(node))})"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (not node.name.startswith("_") or node.name == "__init__")
        and len(_positional(node)) > 3
    ]
    assert not crowded, f"{_module_name(path)}: put a `*` after the first one or two parameters of {crowded}"
