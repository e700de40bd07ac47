"""Reading packager.toml at the repository root over the embedded defaults (`settings`), checking every
backend it names against the registry of its plug point."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from packager.environments import ENV_BUILDERS
from packager.registry import Registry
from packager.settings import DEFAULT_RUNTIME, Config, ConfigError, Constraint, Runtime
from packager.triton import LAUNCHERS

PACKAGER_TOML = "packager.toml"


def load_config(root: Path | None) -> Config:
    """Read `root/packager.toml` when it exists; the embedded defaults otherwise."""
    path = root / PACKAGER_TOML if root is not None else None
    if path is None or not path.is_file():
        return Config(path=None)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    return _parse(path, document)


def _parse(path: Path, document: dict[str, Any]) -> Config:
    _only_keys(path, "top level", document, {"packager", "runtime", "stores", "signing"})
    settings = _table(path, "[packager]", document.get("packager", {}))
    _only_keys(path, "[packager]", settings, {"runtime"})
    runtimes = {DEFAULT_RUNTIME.name: DEFAULT_RUNTIME}
    for name, table in _table(path, "[runtime]", document.get("runtime", {})).items():
        runtimes[name] = _runtime(path, name, _table(path, f"[runtime.{name}]", table))
    config = Config(
        path=path, default_runtime=str(settings.get("runtime", DEFAULT_RUNTIME.name)), runtimes=runtimes
    )
    config.runtime()  # the default must exist
    return config


def _runtime(path: Path, name: str, table: dict[str, Any]) -> Runtime:
    where = f"[runtime.{name}]"
    known = {item.name for item in fields(Runtime)} - {"name"}
    _only_keys(path, where, table, known)
    for key in ("triton_version", "python"):
        if not isinstance(table.get(key), str):
            raise ConfigError(f'{path}: {where} needs {key} (a string such as "2.51.0" or "3.11")')
    _backend(path, where, table, "launcher", LAUNCHERS)
    _backend(path, where, table, "env_builder", ENV_BUILDERS)
    constraints = []
    for item in table.get("constraints", []):
        if not isinstance(item, dict) or set(item) != {"requirement", "reason"}:
            raise ConfigError(
                f'{path}: {where} constraints are {{ requirement = "...", reason = "..." }} tables'
            )
        constraints.append(Constraint(str(item["requirement"]), str(item["reason"])))
    values = {key: str(value) for key, value in table.items() if key != "constraints"}
    return Runtime(name=name, constraints=tuple(constraints), **values)


def _backend(path: Path, where: str, table: dict[str, Any], key: str, registry: Registry[Any]) -> None:
    if key in table and table[key] not in registry.names():
        raise ConfigError(f"{path}: {where} {key} must be one of {', '.join(registry.names())}")


def _table(path: Path, where: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    return value


def _only_keys(path: Path, where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{path}: {where} has unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )
