"""Asking a real Triton for the configs it completes at load time (a python model's `auto_complete_config`,
a backend filling inputs and outputs from its model file), once per content.

Model code never runs in the packager's process: the Triton models are staged as a replay stages them
(instance groups asking for a GPU run on CPU: devices do not change a config's tensors) and loaded in a
sandboxed server with auto-complete on (Triton's default), and `GET /v2/models/<m>/config` is read back.
A python step that loads an environment is completed in it, where the caller can give one (validate: one
already built; replay, push and serve: after building it).

Each answer is cached in the packager's cache (`configs/`) under a digest of everything that decides it:
the Triton model's files (its environment tarball aside), the shared libraries its steps import, the key of
its environment, and the runtime's Triton and Python versions. A second validate starts no server.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from packager.archives import file_digest, tree_members
from packager.cache import building, cache_root, locked
from packager.environments import EnvBuilder, Environment, cached_environment, ensure_environment
from packager.modeldir import (
    ENV_PATH_PARAMETER,
    TRITON_CONFIG,
    Completion,
    Diagnostic,
    ModelDir,
    TritonModel,
    env_path,
    libraries_dir,
    library_files,
)
from packager.preflight import prepare
from packager.reporting import Report, silent
from packager.scratch import scratch_dir
from packager.settings import Runtime
from packager.triton.launcher import LOAD_TIMEOUT, Launcher, Server, ServerError, launcher_for
from packager.triton.serving import lends_interpreter, on_cpu, parsed_config, stage_model, write_staged_config
from packager.validation import ModelReport

# Bump when what a cached completion holds, or how it is keyed, changes.
COMPLETION_FORMAT = 1
CONFIG_FILE = "config.json"  # Triton's answer, as it gave it


def completion_key(
    triton: TritonModel, libs: Path | None, *, runtime: Runtime, environment: Environment | None
) -> str:
    """The content address of a Triton model's completed config: everything that decides it."""
    skipped = env_path(triton)

    def keep(name: str) -> bool:
        return "__pycache__" not in name.split("/") and triton.directory / name != skipped

    files = {
        member.name: file_digest(member.source) if member.source is not None else f"-> {member.target}"
        for member in tree_members(triton.directory, keep=keep)
        if member.kind in ("file", "symlink")
    }
    inputs = {
        "format": COMPLETION_FORMAT,
        "model": triton.name,
        "triton": runtime.triton_version,
        "python": runtime.python,
        "files": files,
        "libraries": {placed: file_digest(path) for placed, path in library_files(triton, libs)},
        "environment": environment.key if environment is not None and skipped is not None else None,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _entry(key: str) -> Path:
    return cache_root() / "configs" / key[:32]


def _cached(key: str) -> model_config_pb2.ModelConfig | None:
    try:
        document = json.loads((_entry(key) / CONFIG_FILE).read_text())
        return parsed_config(document)
    except (OSError, ValueError, json_format.ParseError):
        return None


def _store(key: str, document: Mapping[str, object], facts: Mapping[str, object]) -> None:
    """Keep Triton's answer under `key`; where the cache is read-only (the quality gate's), it is only used."""
    final = _entry(key)
    try:
        with locked(final):
            if final.is_dir():
                return
            with building(final) as scratch:
                (scratch / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
                (scratch / "completion.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    except OSError:
        return


def _stage(
    destination: Path, triton: TritonModel, libs: Path | None, environment: Environment | None, mode: str
) -> None:
    """Stage one model to complete, as a replay would, with its instance groups on CPU (devices do not
    change a config's tensors) and, without `environment`, without its EXECUTION_ENV_PATH."""
    stage_model(destination, triton, libs=libs, environment=environment, env_mode=mode)
    config = on_cpu(triton.config)
    if environment is None and ENV_PATH_PARAMETER in config.parameters:
        del config.parameters[ENV_PATH_PARAMETER]
    write_staged_config(destination / TRITON_CONFIG, config)


class TritonCompleter:
    """A `Completer` that asks a server of `runtime` (started by `launcher`, only on a cache miss) for the
    configs Triton completes. A python step that loads an environment is completed in the one `environment`
    gives; where it gives none (not built yet), on the server's own Python, as `auto_complete_config`
    usually needs only pb_utils and numpy (what that cannot load is said, not counted as a problem)."""

    def __init__(
        self,
        runtime: Runtime,
        launcher: Callable[[], Launcher],
        environment: Callable[[ModelDir], Environment | None],
        *,
        report: Report = silent,
        load_timeout: float = LOAD_TIMEOUT,
    ) -> None:
        self.runtime = runtime
        self.launcher = launcher
        self.environment = environment
        self.report = report
        self.load_timeout = load_timeout
        self.who = f"Triton {runtime.triton_version}"

    @classmethod
    def for_runtime(
        cls,
        runtime: Runtime,
        builder: EnvBuilder,
        *,
        build_envs: bool,
        report: Report = silent,
        launcher: Launcher | None = None,
        load_timeout: float = LOAD_TIMEOUT,
    ) -> TritonCompleter:
        """A completer on `launcher` (default: the runtime's, made only when a server is needed); python
        steps' environments from the cache, or built now where `build_envs` (replay, push, serve: what
        validate and adopt never do)."""
        made = [launcher] if launcher is not None else []

        def launch() -> Launcher:
            made[:] = made or [launcher_for(runtime, report)]
            return made[0]

        def environment(model: ModelDir) -> Environment | None:
            if build_envs:
                return ensure_environment(model, runtime, builder, report=report)
            return cached_environment(model, runtime, builder)

        return cls(runtime, launch, environment, report=report, load_timeout=load_timeout)

    def __call__(self, model: ModelDir, triton_models: Mapping[str, TritonModel]) -> dict[str, Completion]:
        started = time.monotonic()
        libs = libraries_dir(model.path)
        needs_env = any(env_path(triton) is not None for triton in triton_models.values())
        environment = self.environment(model) if needs_env else None
        bare = {name for name, triton in triton_models.items() if env_path(triton) and environment is None}
        completions: dict[str, Completion] = {}
        pending: dict[str, str] = {}  # the models to ask a server about, and their keys
        for name, triton in sorted(triton_models.items()):
            key = completion_key(triton, libs, runtime=self.runtime, environment=environment)
            cached = _cached(key)
            if cached is None:
                pending[name] = key
            else:
                note = self._who(model.name, name in bare)
                completions[name] = Completion(cached, note, True, time.monotonic() - started)
        if pending:
            asked = {name: triton_models[name] for name in pending}
            completions.update(
                self._ask(model, asked, keys=pending, libs=libs, environment=environment, bare=bare)
            )
        return completions

    def _who(self, model: str, bare: bool) -> str:
        """Who completed a config: the runtime's Triton, on its own Python where the environment is not
        built yet."""
        if not bare:
            return self.who
        return f"{self.who} on its own Python (the environment is not built yet: `packager env {model}`)"

    def _ask(
        self,
        model: ModelDir,
        triton_models: Mapping[str, TritonModel],
        *,
        keys: Mapping[str, str],
        libs: Path | None,
        environment: Environment | None,
        bare: set[str],
    ) -> dict[str, Completion]:
        """Stage `triton_models` (those in `bare` without their environment), start a server, load each
        and read back its config."""
        started = time.monotonic()
        launcher = self.launcher()
        missing = {
            name for name, triton in triton_models.items() if triton.backend() not in launcher.backends
        }
        completions = {
            name: Completion(
                None, f"the {launcher.name} launcher's Triton has no {triton_models[name].backend()} backend"
            )
            for name in missing
        }
        asked = {name: triton for name, triton in triton_models.items() if name not in missing}
        if not asked:
            return completions
        self.report(
            f"{model.name}: asking {self.who} for the config it completes of {', '.join(sorted(asked))}"
        )
        with scratch_dir(f"complete-{model.name}") as scratch:
            scratch.chmod(0o755)  # a server in a container reads the repository as another user
            repository = scratch / "repository"
            repository.mkdir(mode=0o755)
            mode = "unpacked" if launcher.unpacked_envs else "packed"
            for name, triton in asked.items():
                _stage(repository / name, triton, libs, None if name in bare else environment, mode)
            portable = environment.portable if environment is not None else None
            lend = lends_interpreter(asked, portable) or bool(bare)
            with launcher.start(repository, scratch / "triton.log", lend_interpreter=lend) as server:

                def read(name: str) -> Completion:
                    return self._read(
                        server,
                        asked[name],
                        key=keys[name],
                        started=started,
                        model=model.name,
                        bare=name in bare,
                    )

                with ThreadPoolExecutor(max_workers=len(asked)) as pool:
                    completions.update(zip(sorted(asked), pool.map(read, sorted(asked)), strict=True))
        return completions

    def _read(
        self, server: Server, triton: TritonModel, *, key: str, started: float, model: str, bare: bool
    ) -> Completion:
        """Load one model (of model directory `model`) and read back its completed config (kept in the
        cache)."""
        try:
            server.load(triton.name, self.load_timeout)
            document = server.model_config(triton.name)
        except ServerError as error:
            why = str(error).splitlines()[0].removeprefix(f"Triton refused to load {triton.name!r}: ")
            if bare:  # what its environment holds may be what it lacked
                note = f"{self._who(model, bare)} could not load it ({why}); build it, then validate again"
                return Completion(None, note)
            message = f"Triton refused to load it to complete its config ({triton.completion_reason}): {why}"
            problem = Diagnostic(triton.parsed.path, None, None, message, "completion")
            return Completion(None, "Triton refused to load it", problem=problem)
        seconds = time.monotonic() - started
        facts = {"model": triton.name, "triton": self.runtime.triton_version, "seconds": round(seconds, 3)}
        _store(key, document, facts)
        return Completion(parsed_config(document), self._who(model, bare), False, seconds)


def prepare_to_serve(
    model: ModelDir,
    runtime: Runtime,
    *,
    builder: EnvBuilder,
    launcher: Launcher,
    report: Report = silent,
    load_timeout: float = LOAD_TIMEOUT,
) -> tuple[ModelReport, Environment | None]:
    """The preflight of a model `launcher` is about to serve: validated against the configs its Triton
    completes (asked of `launcher`), weights checked, environment built now where it is not cached."""
    complete = TritonCompleter.for_runtime(
        runtime, builder, build_envs=True, report=report, launcher=launcher, load_timeout=load_timeout
    )
    return prepare(model, runtime, builder, report=report, complete=complete)
