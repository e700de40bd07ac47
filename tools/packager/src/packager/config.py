"""Reading packager.toml at the repository root over the embedded defaults (`settings`).

Every table and key is parsed, type-checked and used, or refused as `packager.toml:line:col: ...` with the
keys that are allowed; every backend it names is checked against the registry of its plug point.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from packager.environments import ENV_BUILDERS
from packager.modeldir import display_path
from packager.registry import Registry
from packager.release.stores import store_uri_problem
from packager.settings import (
    AUTO,
    DEFAULT_RUNTIME,
    OVER_BUDGET,
    ColdStartBudget,
    Config,
    ConfigError,
    Constraint,
    Runtime,
    Stores,
)
from packager.toml_positions import TomlPositions
from packager.triton import LAUNCHERS

PACKAGER_TOML = "packager.toml"
PYTHON_VERSION = re.compile(r"3\.[0-9]+")
SIZE = re.compile(r"[0-9]+[bkmg]?")
TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
RUNTIME_KEYS = {item.name for item in fields(Runtime)} - {"name"}
LONG_INTEGER = re.compile(r"[0-9][0-9_]{%d,}" % sys.get_int_max_str_digits())
LONG = f"an integer of more than {sys.get_int_max_str_digits()} digits"


def load_config(root: Path | None) -> Config:
    """Read `root/packager.toml` when it exists; the embedded defaults otherwise."""
    path = root / PACKAGER_TOML if root is not None else None
    if path is None or not path.is_file():
        return Config(path=None)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as universal newlines read it
    except UnicodeDecodeError as error:
        before = raw[: error.start].decode("utf-8")
        raise ConfigError(
            f"{display_path(path)}:{_where(before, len(before))}: not UTF-8 text (byte {error.start}); "
            "save it as UTF-8"
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = TOML_POSITION.search(str(error))
        where = f"{found.group(1)}:{found.group(2)}" if found else "1"
        reason = TOML_POSITION.sub("", str(error)).strip()
        raise ConfigError(f"{display_path(path)}:{where}: not valid TOML: {reason}") from None
    except RecursionError:
        raise ConfigError(
            f"{display_path(path)}: not valid TOML: its arrays or tables nest too deeply"
        ) from None
    except ValueError:  # an integer past Python's limit on digits, which tomllib does not catch
        raise ConfigError(f"{display_path(path)}:{_long_integer(text)}: not valid TOML: {LONG}") from None
    return _Reader(path, TomlPositions(text)).config(document)


def _long_integer(text: str) -> str:
    """`line:col` of the first integer in `text` too long for Python to convert ("1" if none is)."""
    found = LONG_INTEGER.search(text)
    return "1" if found is None else _where(text, found.start())


def _where(text: str, offset: int) -> str:
    """`line:col` of `offset` in `text`."""
    line, column = text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)
    return f"{line}:{column}"


class _Reader:
    """Reads one packager.toml, raising ConfigError located at the offending key."""

    def __init__(self, path: Path, positions: TomlPositions) -> None:
        self.path = path
        self.positions = positions

    def error(self, at: tuple[str | int, ...], message: str) -> ConfigError:
        """`message` located at the value of `at` (or the table it is missing from)."""
        return self._located(self.positions.value_at(*at), message)

    def _located(self, position: tuple[int, int] | None, message: str) -> ConfigError:
        where = f"{position[0]}:{position[1]}" if position else "1"
        return ConfigError(f"{display_path(self.path)}:{where}: {message}")

    def config(self, document: dict[str, Any]) -> Config:
        self.only_keys((), document, {"packager", "runtime", "stores", "signing", "endpoint"})
        settings = self.table(("packager",), document)
        self.only_keys(("packager",), settings, {"runtime"})
        runtimes = {DEFAULT_RUNTIME.name: DEFAULT_RUNTIME}
        tables = self.table(("runtime",), document)
        for name in tables:
            runtimes[name] = self.runtime(name, self.table(("runtime", name), tables))
        default = self.string(("packager", "runtime"), settings, DEFAULT_RUNTIME.name)
        if default not in runtimes and default != AUTO:
            known = ", ".join(sorted(runtimes))
            raise self.error(
                ("packager", "runtime"), f"[packager] runtime {default!r} is not defined (known: {known})"
            )
        return Config(
            path=self.path,
            default_runtime=default,
            runtimes=runtimes,
            stores=self.stores(self.table(("stores",), document)),
            public_key=self.public_key(self.table(("signing",), document)),
            cold_start=self.cold_start(self.table(("endpoint",), document)),
        )

    def cold_start(self, table: dict[str, Any]) -> ColdStartBudget:
        at = ("endpoint",)
        self.only_keys(at, table, {"cold_start_budget", "over_budget"})
        seconds = table.get("cold_start_budget", ColdStartBudget.seconds)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
            raise self.error(
                (*at, "cold_start_budget"),
                "[endpoint] cold_start_budget is seconds, a number above 0 (SageMaker gives up at 60), such as 30",
            )
        over = self.string((*at, "over_budget"), table, ColdStartBudget.over_budget)
        chosen = next((choice for choice in OVER_BUDGET if choice == over), None)
        if chosen is None:
            raise self.error(
                (*at, "over_budget"), f'[endpoint] over_budget is "refuse" or "warn", not {over!r}'
            )
        return ColdStartBudget(float(seconds), chosen)

    def runtime(self, name: str, table: dict[str, Any]) -> Runtime:
        at = ("runtime", name)
        self.only_keys(at, table, RUNTIME_KEYS)
        for key in ("triton_version", "python"):
            if key not in table:
                raise self.error(at, f'[runtime.{name}] needs {key} (a string such as "2.51.0" or "3.11")')
        values = {
            key: self.string((*at, key), table, "")
            for key in RUNTIME_KEYS - {"constraints", "channels", "network", "gpu_as_cpu"}
            if key in table
        }
        if not PYTHON_VERSION.fullmatch(values["python"]):
            raise self.error((*at, "python"), f'[runtime.{name}] python is a CPython minor such as "3.11"')
        self.backend((*at, "launcher"), table, LAUNCHERS)
        self.backend((*at, "env_builder"), table, ENV_BUILDERS)
        if "shm_size" in values and not SIZE.fullmatch(values["shm_size"]):
            raise self.error((*at, "shm_size"), f'[runtime.{name}] shm_size is a size such as "256m" or "1g"')
        if values.get("launcher") == "container" and not (
            values.get("image") or values.get("server_package")
        ):
            raise self.error(
                (*at, "launcher"),
                f"[runtime.{name}] a container runtime names its image, or a server_package to build one from",
            )
        constraints = tuple(
            self.constraint((*at, "constraints", index), item)
            for index, item in enumerate(self.array((*at, "constraints"), table))
        )
        channels = self.names(
            (*at, "channels"),
            table,
            default=["conda-forge"],
            shape=f'[runtime.{name}] channels is a non-empty list of conda channels, such as ["conda-forge"]',
        )
        network = self.boolean((*at, "network"), table, Runtime.network)
        gpu_as_cpu = self.boolean((*at, "gpu_as_cpu"), table, Runtime.gpu_as_cpu)
        return Runtime(
            name=name,
            constraints=constraints,
            channels=tuple(channels),
            network=network,
            gpu_as_cpu=gpu_as_cpu,
            **values,
        )

    def constraint(self, at: tuple[str | int, ...], item: object) -> Constraint:
        shape = 'constraints are { requirement = "numpy<2", reason = "why" } tables'
        if not isinstance(item, dict) or set(item) != {"requirement", "reason"}:
            raise self.error(at, shape)
        requirement, reason = item["requirement"], item["reason"]
        if not isinstance(requirement, str) or not isinstance(reason, str):
            raise self.error(at, shape)
        try:
            Requirement(requirement)
        except InvalidRequirement as error:
            raise self.error(
                (*at, "requirement"), f"constraint {requirement!r} is not a requirement ({error})"
            ) from None
        return Constraint(requirement, reason)

    def stores(self, table: dict[str, Any]) -> Stores:
        self.only_keys(("stores",), table, {"staging", "production", "production_branches"})
        uris = {
            key: self.string(("stores", key), table, getattr(Stores(), key))
            for key in ("staging", "production")
        }
        for key, uri in uris.items():
            problem = store_uri_problem(uri)
            if problem is not None:
                raise self.error(
                    ("stores", key),
                    f"[stores] {key} {uri!r} is not a store URI ({problem}): "
                    "give s3://bucket/prefix, file:///dir or file:dir",
                )
        branches = self.names(
            ("stores", "production_branches"),
            table,
            default=list(Stores().production_branches),
            shape='[stores] production_branches is a non-empty list of branch names, such as ["main"]',
        )
        return Stores(uris["staging"], uris["production"], tuple(branches))

    def public_key(self, table: dict[str, Any]) -> Path | None:
        self.only_keys(("signing",), table, {"public_key"})
        if "public_key" not in table:
            return None
        key = self.path.parent / self.string(("signing", "public_key"), table, "")
        if not key.is_file():
            raise self.error(
                ("signing", "public_key"),
                f"[signing] public_key {display_path(key)}: no such file (make a pair with `packager keygen`)",
            )
        return key

    def backend(self, at: tuple[str, ...], table: dict[str, Any], registry: Registry[Any]) -> None:
        key = at[-1]
        if key in table and table[key] not in registry.names():
            raise self.error(at, f"{key} must be one of {', '.join(registry.names())}, not {table[key]!r}")

    def table(self, at: tuple[str, ...], parent: dict[str, Any]) -> dict[str, Any]:
        value = parent.get(at[-1], {})
        if not isinstance(value, dict):
            raise self.error(at, f"[{'.'.join(at)}] must be a table")
        return value

    def string(self, at: tuple[str, ...], table: dict[str, Any], default: str) -> str:
        value = table.get(at[-1], default)
        if not isinstance(value, str):
            raise self._wrong_type(at, "a string", value)
        return value

    def boolean(self, at: tuple[str, ...], table: dict[str, Any], default: bool) -> bool:
        value = table.get(at[-1], default)
        if not isinstance(value, bool):
            raise self._wrong_type(at, "true or false", value)
        return value

    def array(
        self, at: tuple[str, ...], table: dict[str, Any], default: list[Any] | None = None
    ) -> list[Any]:
        value = table.get(at[-1], default or [])
        if not isinstance(value, list):
            raise self._wrong_type(at, "a list", value)
        return value

    def names(
        self, at: tuple[str, ...], table: dict[str, Any], *, default: list[str], shape: str
    ) -> list[str]:
        """A non-empty list of non-empty strings, refused at the first item that is not one."""
        value = self.array(at, table, default)
        wrong = next(
            (index for index, item in enumerate(value) if not (isinstance(item, str) and item)), None
        )
        if not value or wrong is not None:
            raise self.error(at if wrong is None else (*at, wrong), shape)
        return value

    def _wrong_type(self, at: tuple[str, ...], what: str, value: object) -> ConfigError:
        key = f"[{'.'.join(at[:-1])}] {at[-1]}"
        return self.error(at, f"{key} must be {what}, not {type(value).__name__} {value!r}")

    def only_keys(self, at: tuple[str, ...], table: dict[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            where = f"[{'.'.join(at)}]" if at else "the top level"
            raise self._located(
                self.positions.at(*at, unknown[0]),
                f"{where} has unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})",
            )
