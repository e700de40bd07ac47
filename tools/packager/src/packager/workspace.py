"""The workspace a command runs in: the monorepo root (if any), its packager.toml, and where outputs go."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packager.artifacts import read_private_key, read_public_key
from packager.config import load_config
from packager.errors import UsageError
from packager.modeldir import ModelDir, discover_models, find_repo_root
from packager.release import Revision, Route, resolve_revision, route
from packager.release.stores import Store, open_store
from packager.settings import AUTO, Config, Runtime
from packager.triton import container_ready

STAGING_VARIABLE = "PACKAGER_STAGING_URI"
PRODUCTION_VARIABLE = "PACKAGER_PRODUCTION_URI"


@dataclass
class Workspace:
    """What every command shares: the monorepo root (if any) and its configuration."""

    root: Path | None
    config: Config

    @classmethod
    def find(cls, root: Path | None = None) -> Workspace:
        """The workspace at `root`, or the nearest monorepo above the current directory."""
        root = root or find_repo_root(Path.cwd())
        return cls(root, load_config(root))

    def models(self, args: tuple[str, ...]) -> list[ModelDir]:
        return discover_models(args, self.root)

    def runtime(self, name: str | None, engine: bool = True, cpu: bool = False) -> Runtime:
        """The named runtime, or the configured one; `auto` is the runtime named "container" where an
        engine answers and holds its image, else the one named "local" (always, without an `engine`: what
        the quality gate's tests resolve, which never see one). `cpu` (--cpu): KIND_GPU instance groups run
        as KIND_CPU, whatever its gpu_as_cpu says."""
        runtime = self._runtime(name, engine)
        return dataclasses.replace(runtime, gpu_as_cpu=True) if cpu else runtime

    def _runtime(self, name: str | None, engine: bool) -> Runtime:
        chosen = name or self.config.default_runtime
        if chosen != AUTO:
            return self.config.runtime(chosen)
        container = self.config.runtimes.get("container")
        if engine and container is not None and container_ready(container):
            return container
        return self.config.runtime("local")

    def store(self, uri: str) -> Store:
        """The store a URI names, relative URIs taken from the repository root."""
        return open_store(uri, self.root)

    def store_uris(self, staging: str | None = None, production: str | None = None) -> tuple[str, str]:
        """The staging and production URIs: flags, then environment variables, then packager.toml."""
        return (
            staging or os.environ.get(STAGING_VARIABLE) or self.config.stores.staging,
            production or os.environ.get(PRODUCTION_VARIABLE) or self.config.stores.production,
        )

    def production_store(self, production: str | None = None) -> Store:
        """The production store (`production` overrides its configured URI)."""
        return self.store(self.store_uris(production=production)[1])

    def require_root(self, command: str) -> Path:
        """The monorepo root, for commands that only run in one."""
        if self.root is None:
            raise UsageError(f"{command} runs in a monorepo checkout; run it inside one (or give --root)")
        return self.root

    def revision(self, branch: str | None, commit: str | None) -> Revision:
        """The branch and commit a push publishes as (flags, else CI variables, else git), checked."""
        root = self.require_root("publishing")
        return resolve_revision(
            root, branch=branch, commit=commit, production_branches=self.config.stores.production_branches
        )

    def route(self, revision: Revision, staging: str | None, production: str | None) -> Route:
        """Where a push of `revision` publishes, with that store opened."""
        staging_uri, production_uri = self.store_uris(staging, production)
        to_production = revision.branch in self.config.stores.production_branches
        store = self.store(production_uri if to_production else staging_uri)
        return route(revision.branch, revision.commit, store=store, production=to_production)

    def public_key(self, given: Path | None) -> Path | None:
        """The key signatures are verified with: --public-key / PACKAGER_VERIFY_KEY, else packager.toml;
        refused before any work unless it is an Ed25519 public key."""
        key = given if given is not None else self.config.public_key
        if key is not None:
            read_public_key(key)
        return key

    @staticmethod
    def signing_key(given: Path | None) -> Path | None:
        """The key manifests are signed with (--sign-key / PACKAGER_SIGNING_KEY), refused before any work
        unless it is an Ed25519 private key."""
        if given is not None:
            read_private_key(given)
        return given

    def dist(self) -> Path:
        return (self.root or Path.cwd()) / "dist"

    def log_dir(self) -> Path:
        """Where server logs go: dist/logs in the monorepo, else a temporary directory."""
        directory = (
            self.root / "dist" / "logs" if self.root else Path(tempfile.mkdtemp(prefix="packager-logs-"))
        )
        directory.mkdir(parents=True, exist_ok=True)
        return directory
