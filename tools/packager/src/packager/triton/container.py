"""The container launcher: Triton in the runtime's image, through the Docker Engine API, so that what is
tested is what the endpoint's container loads. Nothing of this machine's Python reaches it.

The model repository (and the cached environments it links to) is mounted read-only at its own path.
The container has no network (`network_mode="none"`: nothing but its loopback), and the packager reaches
the server through relays (see `relay`); a runtime with `network = true` shares the host's network
instead, the server listening on 127.0.0.1 ports of ours. It runs as nobody, with no capabilities, on a
read-only root with a private /tmp, with `shm_size` of /dev/shm and the host's ulimits. Leaving the block removes the container on every path; containers of a packager that was
killed (no code ran) are removed by the next launcher start on this machine.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from packager.errors import EnvironmentFailure
from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.triton.engine import connect, missing_image
from packager.triton.image import NO_RELAY, image_contents, image_for
from packager.triton.launcher import READY_TIMEOUT, Ports, ServerStartError, TritonServer, server_arguments
from packager.triton.relay import wired
from packager.triton.sandbox import allowed_environment, linked_targets

LABEL = "packager.launcher"
OWNER_LABEL = "packager.owner"  # <boot id>:<pid> of the packager that started it
STOP_GRACE = 10
SERVER = "/opt/tritonserver/bin/tritonserver"  # where NVIDIA's images, and the packager's, have it


class ContainerProcess:
    """A running container, seen as a process: None while it runs, else its exit status."""

    def __init__(self, container: Any) -> None:
        self.container = container

    def poll(self) -> int | None:
        try:
            self.container.reload()
        except Exception:  # removed, or the engine is gone: it does not run
            return -1
        if self.container.status in ("exited", "dead", "stopped"):
            return int(self.container.attrs.get("State", {}).get("ExitCode", -1))
        return None


class ContainerLauncher:
    """Runs the runtime's image as a container of the engine DOCKER_HOST names."""

    name = "container"
    unpacked_envs = False  # a container sees only what is mounted, and the cache is not

    def __init__(
        self,
        image: str,
        *,
        shm_size: str = "256m",
        ready_timeout: float = READY_TIMEOUT,
        backends: frozenset[str] = frozenset({"python"}),
        network: bool = False,
        gpu_as_cpu: bool = False,
    ) -> None:
        self.image = image
        self.shm_size = shm_size
        self.ready_timeout = ready_timeout
        self.backends = backends
        self.network = network
        self.gpu_as_cpu = gpu_as_cpu

    @classmethod
    def for_runtime(cls, runtime: Runtime, report: Report = silent) -> ContainerLauncher:
        """A launcher of the runtime's image, which must be here (nothing is pulled or built behind your back,
        so there is nothing to `report`)."""
        image = image_for(runtime)
        client = connect()
        try:
            if missing_image(client, image):
                how = (
                    f"build it with `packager image build --runtime {runtime.name}`"
                    if not runtime.image
                    else f"pull it (`docker pull {image}`) where its registry is reachable"
                )
                raise EnvironmentFailure(
                    f"runtime {runtime.name!r} serves with image {image}, which is not here: {how}"
                )
            contents = image_contents(client, image)
        finally:
            client.close()
        if contents.python != runtime.python:
            raise EnvironmentFailure(
                f"image {image}'s python backend stub runs CPython {contents.python}, but runtime "
                f"{runtime.name!r} says {runtime.python}: environments built for it would not load; correct "
                f"[runtime.{runtime.name}] python"
            )
        if not contents.relay and not runtime.network:
            raise EnvironmentFailure(f"image {image} has {NO_RELAY}")
        backends = frozenset(contents.backends)
        return cls(
            image,
            shm_size=runtime.shm_size,
            backends=backends,
            network=runtime.network,
            gpu_as_cpu=runtime.gpu_as_cpu,
        )

    @contextmanager
    def start(
        self, repository: Path, log_path: Path, *, lend_interpreter: bool = True, ports: Ports = Ports()
    ) -> Iterator[TritonServer]:
        if not repository.is_dir():  # the engine would make it, as root, and serve it empty
            raise ServerStartError(f"the model repository {repository} is not a directory: nothing to serve")
        with wired(ports, self.network, log_path) as wiring:
            arguments = server_arguments(repository, wiring.listen)
            readable = (repository, *linked_targets(repository))
            mounts = {str(path): {"bind": str(path), "mode": "ro"} for path in readable}
            if wiring.directory:
                mounts[str(wiring.directory)] = {"bind": str(wiring.directory), "mode": "rw"}
            client = connect()
            try:
                remove_orphans(client)
                container = client.containers.run(
                    self.image,
                    entrypoint=wiring.command([SERVER, *arguments]),
                    detach=True,
                    network_mode="host" if self.network else "none",
                    volumes=mounts,
                    environment=allowed_environment(
                        {name: value for name, value in os.environ.items() if name != "PATH"}
                    ),
                    user="65534:65534",
                    cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    read_only=True,
                    tmpfs={"/tmp": "rw,exec,size=50%"},
                    shm_size=self.shm_size,
                    ulimits=_ulimits(),
                    labels={LABEL: "container", OWNER_LABEL: owner()},
                )
            except EnvironmentFailure:
                client.close()
                raise
            except Exception as error:  # the engine refused to create or start it
                client.close()
                raise ServerStartError(
                    f"the container engine could not start {self.image}: {error}"
                ) from None
            refresh_log = _log_writer(container, log_path)
            try:
                server = TritonServer(
                    wiring.process(ContainerProcess(container)),
                    wiring.endpoints,
                    log_path=log_path,
                    refresh_log=refresh_log,
                )
                server.wait_ready(self.ready_timeout)
                yield server
            finally:
                refresh_log()
                _remove(container)
                client.close()


def _ulimits() -> list[Any]:
    """nofile and nproc within the host's hard limits (passing any ulimit replaces the engine's defaults,
    and runc cannot set nproc above pid_max)."""
    from docker.types import Ulimit

    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    limits = []
    for name, which, ceiling in (
        ("nofile", resource.RLIMIT_NOFILE, 1 << 20),
        ("nproc", resource.RLIMIT_NPROC, pid_max),
    ):
        _, hard = resource.getrlimit(which)
        value = min(hard if hard != resource.RLIM_INFINITY else ceiling, ceiling)
        limits.append(Ulimit(name=name, soft=value, hard=value))
    return limits


def owner(pid: int | None = None) -> str:
    """The owner label of the containers a packager process starts: this boot, and its pid."""
    return f"{_boot_id()}:{pid or os.getpid()}"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def remove_orphans(client: Any) -> list[str]:
    """Remove the containers of packagers on this machine that are gone (killed: no code ran); their names."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        boot, _, pid = str(container.labels.get(OWNER_LABEL, "")).partition(":")
        if boot == _boot_id() and pid.isdigit() and _alive(int(pid)):
            continue
        _remove(container)
        removed.append(container.name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(container: Any) -> None:
    """Stop (Triton unloads and exits), then remove, whatever state it is in."""
    try:
        container.stop(timeout=STOP_GRACE)
    except Exception:  # already gone, or it never ran
        pass
    try:
        container.remove(force=True)
    except Exception:  # already removed
        pass


def _log_writer(container: Any, log_path: Path) -> Callable[[], None]:
    """What brings the log file up to date with the container's output (read whole: podman streams
    unreliably after an exit)."""

    def refresh() -> None:
        try:
            log_path.write_bytes(container.logs())
        except Exception:  # the container is gone: the file keeps what was read last
            pass

    return refresh


def container_ready(runtime: Runtime) -> bool:
    """Whether an engine answers and holds the runtime's image (what `--runtime auto` asks)."""
    try:
        client = connect()
    except EnvironmentFailure:
        return False
    try:
        return not missing_image(client, image_for(runtime))
    except EnvironmentFailure:
        return False
    finally:
        client.close()
