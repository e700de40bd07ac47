"""One registry per plug point: the backends' names, and where each one's factory lives.

A plug point (env builders, Triton launchers, stores) defines its interface and its registry in one
module. A registry line maps a name, as packager.toml or a URI scheme says it, to `module:attribute`;
the module is imported only when that backend is chosen, so an unused backend costs nothing.
Adding a backend is one new module and one registry line.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar, cast

from packager.errors import UsageError

Factory = TypeVar("Factory")


class UnknownBackend(UsageError):
    """A plug point was asked for a backend it does not have."""


class Registry(Generic[Factory]):
    """The backends of one plug point, by name."""

    def __init__(self, plug_point: str, factories: dict[str, str]) -> None:
        self.plug_point = plug_point
        self._factories = dict(factories)

    def names(self) -> tuple[str, ...]:
        """The backend names, sorted (what a configuration may say)."""
        return tuple(sorted(self._factories))

    def factory(self, name: str) -> Factory:
        """The named backend's factory (a class or a function), imported now."""
        if name not in self._factories:
            raise UnknownBackend(f"no {self.plug_point} {name!r} (known: {', '.join(self.names())})")
        module_name, _, attribute_path = self._factories[name].partition(":")
        found: object = importlib.import_module(module_name)
        for attribute in attribute_path.split("."):
            found = getattr(found, attribute)
        return cast(Factory, found)
