"""The conda builder: Python of the stub's minor solved and installed from conda channels by py-rattler,
the model's lock installed into it by uv, packed by conda-pack. The environment carries its own
interpreter and libpython, so it runs where the build machine's Python is absent (an endpoint).

Channels come from the runtime (`channels`, default conda-forge); PACKAGER_CONDA_CHANNELS (comma-separated)
overrides them. The channel `local` is made from this machine's CPython (see `channel`), for machines
that cannot reach conda-forge.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

from packager.archives import extract
from packager.cache import cache_root, locked
from packager.environments.channel import LOCAL_CHANNEL, local_channel
from packager.environments.interpreters import find_interpreter
from packager.environments.lock import install_from_lock
from packager.errors import EnvironmentFailure
from packager.reporting import Report, silent
from packager.scratch import scratch_dir
from packager.settings import Runtime

CHANNELS_VARIABLE = "PACKAGER_CONDA_CHANNELS"
SUBDIRS = {"x86_64": "linux-64", "aarch64": "linux-aarch64"}
MACHINE_FIELDS = ("extracted_package_dir", "package_tarball_full_path", "indexed_timestamp", "link")
T = TypeVar("T")


class CondaBuilder:
    """A conda environment from channels, filled from the lock, made relocatable by conda-pack."""

    name = "conda"
    portable = True

    def __init__(self, channels: tuple[str, ...] = ("conda-forge",), report: Report = silent) -> None:
        override = os.environ.get(CHANNELS_VARIABLE, "")
        self.channels = tuple(item.strip() for item in override.split(",") if item.strip()) or channels
        self.report = report
        self._sources: dict[str, list[tuple[str, str]]] = {}

    @classmethod
    def for_runtime(cls, runtime: Runtime, report: Report = silent) -> CondaBuilder:
        return cls(runtime.channels, report)

    def _channel_sources(self, python: str) -> list[tuple[str, str]]:
        """Each channel as rattler takes it, and as it joins the cache key: the local one (made once from
        this machine's CPython) by its content, not by where the cache keeps it."""
        if python not in self._sources:
            sources = []
            for channel in self.channels:
                if channel == LOCAL_CHANNEL:
                    made = local_channel(find_interpreter(python), self.report)
                    sources.append((made.as_uri(), f"{LOCAL_CHANNEL}:{made.name}"))
                else:
                    sources.append((channel, channel))
            self._sources[python] = sources
        return self._sources[python]

    def fingerprint(self, python: str) -> dict[str, str]:
        identity = " ".join(name for _, name in self._channel_sources(python))
        return {"channels": identity, "subdir": _subdir()}

    def build(self, lock: Path, python: str, destination: Path) -> None:
        import conda_pack  # imported only when a conda environment is built
        import rattler

        sources = [uri for uri, _ in self._channel_sources(python)]
        # The prefix is written into the environment's text files (and conda-unpack's table): a path that
        # depends only on what is built keeps two builds in two caches byte-identical.
        pins = hashlib.sha256(f"{python}\n{lock.read_text()}".encode()).hexdigest()[:16]
        prefix = Path(tempfile.gettempdir()) / f"packager-conda-{pins}"
        with locked(prefix), scratch_dir("conda-pack") as scratch:
            shutil.rmtree(prefix, ignore_errors=True)
            try:
                records = _run(
                    rattler.solve(
                        sources=sources,
                        specs=[f"python {python}.*"],
                        platforms=[cast(Any, _subdir()), "noarch"],
                        virtual_packages=rattler.VirtualPackage.detect(),
                    ),
                    f"solving python {python} from {', '.join(self.channels)}",
                )
                _run(
                    rattler.install(
                        records, target_prefix=prefix, cache_dir=cache_root() / "rattler", show_progress=False
                    ),
                    f"installing python {python} from {', '.join(self.channels)}",
                )
                install_from_lock(lock, prefix / "bin" / f"python{python}")
                (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)  # rattler's; not part of the environment
                history = prefix / "conda-meta" / "history"  # times of this build; conda-pack dates
                history.write_text("")  # every member by its mtime: make both say nothing of today
                os.utime(history, (0, 0))
                packed = Path(scratch) / "env.tar.gz"
                try:
                    conda_pack.pack(prefix=str(prefix), output=str(packed), compress_level=1, verbose=False)
                except conda_pack.CondaPackException as error:
                    raise EnvironmentFailure(f"conda-pack refused the environment: {error}") from None
            finally:
                shutil.rmtree(prefix, ignore_errors=True)
            destination.mkdir()
            extract(packed, destination)
        _normalize_records(destination / "conda-meta")


def _normalize_records(conda_meta: Path) -> None:
    """Drop what conda's package records say of this build machine (its cache paths, when it indexed a
    local channel), so that the environment's bytes depend on what it holds only."""
    for record in sorted(conda_meta.glob("*.json")):
        data = json.loads(record.read_text())
        for key in MACHINE_FIELDS:
            data.pop(key, None)
        for key in ("channel", "url"):
            if str(data.get(key, "")).startswith("file://"):
                data[key] = (
                    f"{LOCAL_CHANNEL}:{str(data[key]).rsplit('/', 1)[-1]}" if key == "url" else LOCAL_CHANNEL
                )
        record.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _subdir() -> str:
    return SUBDIRS.get(platform.machine(), f"linux-{platform.machine()}")


def _run(step: Coroutine[Any, Any, T], what: str) -> T:
    """Run one of rattler's coroutines; its failures become one line naming the step."""
    try:
        return asyncio.run(step)
    except Exception as error:  # rattler raises its own exception types, one per failure class
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EnvironmentFailure(f"{what} failed: {type(error).__name__}: {first}") from None
