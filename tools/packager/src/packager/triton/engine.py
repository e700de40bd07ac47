"""The container engine, through the Docker Engine API: a Docker engine, Docker Desktop, or podman's
API service. DOCKER_HOST names it; without it, the current docker context; without one, the default
socket."""

from __future__ import annotations

import os
from typing import Any

from packager.errors import EnvironmentFailure


def connect() -> Any:
    """A client of the engine that answers, or EnvironmentFailure saying how to get one."""
    import docker  # imported only where containers are used
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST") or _context_host() or "the default socket"
    try:
        client = docker.DockerClient(base_url=where) if where != "the default socket" else docker.from_env()
        client.ping()
        return client
    except DockerException as error:
        raise EnvironmentFailure(
            f"no container engine answers at {where} ({error}): start Docker, or podman's API service "
            "(`podman system service`), and point DOCKER_HOST at it; or run Triton locally with --runtime local"
        ) from None


def engine_answers() -> bool:
    """Whether a container engine answers (for `--runtime auto`)."""
    try:
        connect().close()
        return True
    except EnvironmentFailure:
        return False


def missing_image(client: Any, reference: str) -> bool:
    """Whether the engine lacks the image (nothing is pulled)."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(reference)
        return False
    except ImageNotFound:
        return True


def _context_host() -> str | None:
    """The endpoint of the current docker context, when one other than the default is set."""
    try:
        from docker.context import ContextAPI

        context = ContextAPI.get_current_context()
    except Exception:  # no docker configuration, or one the SDK cannot read: use the default socket
        return None
    host = getattr(context, "Host", None) if context is not None and context.Name != "default" else None
    return str(host) if host else None
