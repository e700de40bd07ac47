"""The Triton runtime: where a server comes from, how it starts, loads models, and leaves nothing behind.

Owns the launcher plug point (`Launcher` and its registry `LAUNCHERS`; one module per launcher: `local`,
sandboxed by bubblewrap, and `container`, through the Docker Engine API), the runtime's image (`image`),
the running `Server` every launcher yields (readiness, loading, its log; `TritonServer`, a real one),
installing a local server from the runtime's PyPI package, cleanup (process group, /tmp envs, /dev/shm), and serving a validated model
directory (staging a model repository and loading it, instance groups that ask for a GPU refused or run on
CPU), reloading it on save (`reload`), an example request to try a served model with (`example`), and
asking a server for the configs Triton completes, cached by content (`completion`).

Public: Launcher, LAUNCHERS, launcher_for, Server, TritonServer, Endpoints, Ports, ServerError,
ServerStartError, UnservableModel, PortUnavailable, free_ports, shm_hint, READY_TIMEOUT, LOAD_TIMEOUT, ServerInstall,
install_server, Served, staged_repository, loaded, load_all, check_backends, fit_devices, refuse_gpus,
on_cpu, write_staged_config, served_config, completed_from, launched, artifact_launched, ENV_MODES, TritonCompleter,
prepare_to_serve,
container_ready, build_image, check_image, image_for, ImageFacts, Watcher, Reload, example_request,
Example, example_for, curl_command, stream_curl, stream_snippet, Sandbox (the bubblewrap sandbox, which
the quality gate uses too), socat_binary. Backends are
reached through the registry (`packager.triton.local.LocalLauncher` and
`packager.triton.container.ContainerLauncher` for direct use); `packager.triton.fake.FakeLauncher`, a
launcher of in-process fake servers for tests, is in no registry.
"""

from packager.triton.completion import TritonCompleter, prepare_to_serve
from packager.triton.container import container_ready
from packager.triton.example import (
    Example,
    curl_command,
    example_for,
    example_request,
    stream_curl,
    stream_snippet,
)
from packager.triton.image import ImageFacts, build_image, check_image, image_for
from packager.triton.install import ServerInstall, install_server
from packager.triton.launcher import (
    LAUNCHERS,
    LOAD_TIMEOUT,
    READY_TIMEOUT,
    Endpoints,
    Launcher,
    Ports,
    PortUnavailable,
    Server,
    ServerError,
    ServerStartError,
    TritonServer,
    UnservableModel,
    free_ports,
    launcher_for,
    shm_hint,
)
from packager.triton.relay import socat_binary
from packager.triton.reload import Reload, Watcher
from packager.triton.sandbox import Sandbox
from packager.triton.serving import (
    ENV_MODES,
    Served,
    artifact_launched,
    check_backends,
    completed_from,
    fit_devices,
    launched,
    load_all,
    loaded,
    on_cpu,
    refuse_gpus,
    served_config,
    staged_repository,
    write_staged_config,
)

__all__ = [
    "Sandbox",
    "socat_binary",
    "container_ready",
    "Example",
    "curl_command",
    "example_for",
    "example_request",
    "stream_curl",
    "stream_snippet",
    "ImageFacts",
    "build_image",
    "check_image",
    "image_for",
    "ServerInstall",
    "install_server",
    "LAUNCHERS",
    "LOAD_TIMEOUT",
    "READY_TIMEOUT",
    "Endpoints",
    "Launcher",
    "Ports",
    "PortUnavailable",
    "Server",
    "ServerError",
    "ServerStartError",
    "TritonServer",
    "UnservableModel",
    "free_ports",
    "shm_hint",
    "launcher_for",
    "ENV_MODES",
    "artifact_launched",
    "Served",
    "launched",
    "loaded",
    "load_all",
    "check_backends",
    "completed_from",
    "fit_devices",
    "refuse_gpus",
    "served_config",
    "on_cpu",
    "write_staged_config",
    "TritonCompleter",
    "prepare_to_serve",
    "staged_repository",
    "Reload",
    "Watcher",
]
