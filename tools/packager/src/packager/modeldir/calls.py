"""Which Triton models call which: an ensemble's steps, and a python model's calls by name (Business Logic
Scripting: `pb_utils.InferenceRequest(model_name="add_sub", ...)`), read from its source with `ast`, never
run. From those, the models a request may go to (the ones no other model calls), and the models an
endpoint that loads only the top-level model has loaded (`loaded_with`): its ensemble steps, and whatever
a loaded python model loads itself (`pb_utils.load_model(model_name=...)`).

A call's model name is known when it is a string literal, or a variable (or `self.` attribute) that the
file binds only to string literals (`for model_name in ["pytorch", "add_sub"]`); one read from a request
at run time is counted as unresolved.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from packager.modeldir.model_config import TritonModel

REQUEST_CLASS = "InferenceRequest"
LOAD_FUNCTION = "load_model"
MODEL_NAME_ARGUMENT = "model_name"


@dataclass(frozen=True)
class Site:
    """Where a python model names another: the file, and the 1-based line and column of the name."""

    path: Path
    line: int
    column: int


@dataclass(frozen=True)
class Calls:
    """The models a python model's code calls by name (each with where it first names it), and the models
    it loads itself."""

    names: frozenset[str]  # the names known from the source
    unresolved: int = 0  # calls whose model name is known only at run time
    sites: tuple[tuple[str, Site], ...] = ()
    loads: frozenset[str] = frozenset()

    @property
    def makes_calls(self) -> bool:
        return bool(self.names) or self.unresolved > 0

    def site(self, name: str) -> Site | None:
        """Where the code first names `name` as a call's model."""
        return next((site for called, site in self.sites if called == name), None)


def model_calls(model: TritonModel) -> Calls:
    """What a Triton model's python files (each version's, or the one beside its config as NVIDIA's examples
    ship it) call by name; nothing for other backends, or for a file that does not parse (validation
    reports it)."""
    if not model.is_python:
        return Calls(frozenset())
    directories = list(model.versions().values()) or [model.directory]
    found = [_file_calls(directory / model.python_file) for directory in directories]
    return Calls(
        frozenset().union(*(calls.names for calls in found)),
        sum(calls.unresolved for calls in found),
        tuple(site for calls in found for site in calls.sites),
        frozenset().union(*(calls.loads for calls in found)),
    )


def _file_calls(path: Path) -> Calls:
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (OSError, SyntaxError, ValueError, RecursionError):
        return Calls(frozenset())
    bindings = _string_bindings(tree)
    sites: list[tuple[str, Site]] = []
    unresolved = 0
    for argument in _model_name_arguments(tree, REQUEST_CLASS):
        strings = _names(argument, bindings)
        if not strings:
            unresolved += 1
        site = Site(path, argument.lineno, argument.col_offset + 1)
        sites += [(name, site) for name in sorted(strings)]
    loads = {
        name for argument in _model_name_arguments(tree, LOAD_FUNCTION) for name in _names(argument, bindings)
    }
    return Calls(frozenset(name for name, _ in sites), unresolved, tuple(sites), frozenset(loads))


def _names(argument: ast.expr, bindings: dict[str, set[str] | None]) -> set[str]:
    """The model names an argument stands for: a literal's, or those a variable is bound to (none: only
    known at run time)."""
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return {argument.value}
    return bindings.get(_bound_name(argument) or "") or set()


def _model_name_arguments(tree: ast.AST, function_name: str) -> Iterator[ast.expr]:
    """The model-name argument of every call of `function_name` (keyword, or first positional)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
        if called != function_name:
            continue
        keyword = next((k.value for k in node.keywords if k.arg == MODEL_NAME_ARGUMENT), None)
        argument = keyword if keyword is not None else (node.args[0] if node.args else None)
        if argument is not None:
            yield argument


def _bound_name(node: ast.AST) -> str | None:
    """`x` for a variable `x` or an attribute `self.x`; None for any other expression."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f".{node.attr}"
    return None


def _string_bindings(tree: ast.AST) -> dict[str, set[str] | None]:
    """Every variable or attribute the file binds, with the strings it is bound to (None where one binding
    is anything but string literals)."""
    bindings: dict[str, set[str] | None] = {}
    for target, value in _assignments(tree):
        name = _bound_name(target)
        if name is not None:
            strings, previous = _literal_strings(value), bindings.get(name, set())
            bindings[name] = None if strings is None or previous is None else previous | strings
    return bindings


def _assignments(tree: ast.AST) -> Iterator[tuple[ast.expr, ast.expr | None]]:
    """(target, value) of each plain assignment; a for loop's target gets its iterable's elements."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                yield target, node.value
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            yield node.target, None if isinstance(node, ast.AugAssign) else node.value
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            elements = node.iter.elts if isinstance(node.iter, (ast.List, ast.Tuple, ast.Set)) else None
            if elements is None:
                yield node.target, None
            for element in elements or []:
                yield node.target, element


def _literal_strings(value: ast.expr | None) -> set[str] | None:
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return {value.value}
    return None


def entry_points(models: Mapping[str, TritonModel]) -> list[str]:
    """The models a request may go to, sorted: those no other model calls (as an ensemble's step or by name).
    Where several are, the ensembles among them, else those that call others (a model whose calls name their
    target only at run time may call any of the rest); where that leaves none, all of them."""
    calls = {name: model_calls(model) for name, model in models.items()}
    called = {
        target
        for name, model in models.items()
        for target in {step.model_name for step in model.config.ensemble_scheduling.step} | calls[name].names
        if target != name
    }
    free = sorted(set(models) - called)
    ensembles = [name for name in free if models[name].is_ensemble]
    callers = [name for name in free if calls[name].makes_calls]
    return ensembles or (free if len(free) < 2 else callers or free)


def loaded_with(top: str, models: Mapping[str, TritonModel]) -> set[str]:
    """The models an endpoint has loaded once it loads `top` alone (as SageMaker MME does): `top`, the steps
    of each loaded ensemble, and the models each loaded python model loads itself, until nothing is added."""
    loaded: set[str] = set()
    pending = [top]
    while pending:
        name = pending.pop()
        if name in loaded or name not in models:
            continue
        loaded.add(name)
        model = models[name]
        pending += [step.model_name for step in model.config.ensemble_scheduling.step]
        pending += sorted(model_calls(model).loads)
    return loaded


def unloaded_calls(top: str, models: Mapping[str, TritonModel], loads: set[str] | None = None) -> set[str]:
    """The models called by name from a model the endpoint has loaded (see `loaded_with`; `loads`: models a
    loader in front loads too) that it has not loaded."""
    loaded = set().union(*(loaded_with(name, models) for name in {top, *(loads or set())}))
    return {called for name in loaded for called in model_calls(models[name]).names} - loaded
