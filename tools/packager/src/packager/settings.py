"""The packager's configuration: `packager.toml` at the repository root, over embedded defaults."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from packager.errors import PackagerError

CONFIG_FILE = "packager.toml"
NUMPY_2_REASON = "Triton 2.51's python backend returns empty outputs with numpy 2"
LAUNCHERS = ("local",)
ENV_BUILDERS = ("venv", "conda")


class ConfigError(PackagerError):
    """packager.toml is not valid."""


@dataclass(frozen=True)
class Constraint:
    """A requirement every environment for a runtime must satisfy, and why."""

    requirement: str
    reason: str


@dataclass(frozen=True)
class Runtime:
    """The Triton that serves the models: its version, its stub's Python, and what breaks it."""

    name: str
    triton_version: str
    python: str
    server_package: str = ""
    launcher: str = "local"
    env_builder: str = "venv"
    description: str = ""
    constraints: tuple[Constraint, ...] = ()


DEFAULT_RUNTIME = Runtime(
    name="local",
    description="Triton 2.51.0 from the nvidia-pytriton 0.7.0 wheel, run as a local process (CPU)",
    triton_version="2.51.0",
    python="3.11",
    server_package="nvidia-pytriton==0.7.0",
    constraints=(Constraint("numpy<2", NUMPY_2_REASON),),
)


@dataclass(frozen=True)
class Stores:
    """Where artifacts are published: URIs (s3://bucket/prefix, file:///dir, or file:dir relative to the
    repository root) and which branches publish to production."""

    staging: str = "file:dist/stores/staging"
    production: str = "file:dist/stores/production"
    production_branches: tuple[str, ...] = ("main",)


@dataclass(frozen=True)
class Config:
    """Everything packager.toml says, with defaults filled in."""

    path: Path | None
    default_runtime: str = DEFAULT_RUNTIME.name
    runtimes: dict[str, Runtime] = field(default_factory=lambda: {DEFAULT_RUNTIME.name: DEFAULT_RUNTIME})
    stores: Stores = Stores()
    public_key: str | None = None  # verify artifact signatures on promote with this ed25519 key (PEM)

    def runtime(self, name: str | None = None) -> Runtime:
        """The named runtime, or the default one."""
        chosen = name or self.default_runtime
        if chosen not in self.runtimes:
            where = self.path or "the embedded defaults"
            raise ConfigError(f"no runtime {chosen!r} in {where} (known: {', '.join(sorted(self.runtimes))})")
        return self.runtimes[chosen]


def load_config(root: Path | None) -> Config:
    """Read `root/packager.toml` when it exists; the embedded defaults otherwise."""
    path = root / CONFIG_FILE if root is not None else None
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
    if table.get("launcher", "local") not in LAUNCHERS:
        raise ConfigError(f"{path}: {where} launcher must be one of {', '.join(LAUNCHERS)}")
    if table.get("env_builder", "venv") not in ENV_BUILDERS:
        raise ConfigError(f"{path}: {where} env_builder must be one of {', '.join(ENV_BUILDERS)}")
    constraints = []
    for item in table.get("constraints", []):
        if not isinstance(item, dict) or set(item) != {"requirement", "reason"}:
            raise ConfigError(
                f'{path}: {where} constraints are {{ requirement = "...", reason = "..." }} tables'
            )
        constraints.append(Constraint(str(item["requirement"]), str(item["reason"])))
    values = {key: str(value) for key, value in table.items() if key != "constraints"}
    return Runtime(name=name, constraints=tuple(constraints), **values)


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
