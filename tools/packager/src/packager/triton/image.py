"""The Triton image a container runtime serves with, built here without any registry, and checked.

`build_image` makes the runtime's image from a Debian rootfs (debootstrap, imported once as the base) and
the runtime's `server_package` installed on the host for the image's Python and platform by uv, which the
packager carries (the nvidia-pytriton wheel ships tritonserver, the python backend and its stubs), laid out as NVIDIA's images are (`/opt/tritonserver`). It is tagged by
content: building an unchanged image is a no-op. A runtime that names an `image` (an NGC one, say) uses
that instead, pulled where a registry is reachable. `check_image` starts the image's server and reports
its Triton version, its stub's Python and its backends.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.environments.lock import uv_command
from packager.errors import EnvironmentFailure
from packager.reporting import Report, silent
from packager.scratch import scratch_dir
from packager.settings import Runtime
from packager.subprocesses import run_tool
from packager.triton.engine import connect, missing_image
from packager.triton.launcher import DIRECT, free_ports

BASE_IMAGE = "localhost/packager/debian:bookworm"
NO_RELAY = (
    "no socat, which serves a container that has no network: add it to the image (`apt-get install socat`), "
    "or let model code reach the network with the runtime's network = true"
)
IMAGE_REPOSITORY = "packager/triton"
LABEL = "packager.image"
# Bump when the image's recipe changes shape, so that its tag (and so the image) changes.
IMAGE_FORMAT = 1
MIRROR_VARIABLE = "PACKAGER_DEBIAN_MIRROR"
# The wheels that run on the image's Debian bookworm (glibc 2.36), x86_64 (uv takes every older manylinux).
IMAGE_PLATFORM = "x86_64-manylinux_2_36"
DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python{python} python{python}-venv libpython{python} ca-certificates socat \\
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,source=site,target=/tmp/site \\
    python{python} -m venv --without-pip /opt/pytriton \\
 && cp -a /tmp/site/. /opt/pytriton/lib/python{python}/site-packages/ \\
 && server=$(echo /opt/pytriton/lib/python{python}/site-packages/pytriton/tritonserver) \\
 && cp "$server/python_backend_stubs/{python}/triton_python_backend_stub" "$server/backends/python/" \\
 && ln -s "$server" /opt/tritonserver
ENV PATH=/opt/pytriton/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL {label}="{tag}"
ENTRYPOINT ["/opt/tritonserver/bin/tritonserver"]
"""


@dataclass(frozen=True)
class Built:
    """The runtime's image, and whether this call built it."""

    tag: str
    built: bool
    seconds: float


def image_for(runtime: Runtime) -> str:
    """The image a container runtime serves with: the one it names, else the one `build_image` makes."""
    if runtime.image:
        return runtime.image
    if not runtime.server_package:
        raise EnvironmentFailure(
            f"runtime {runtime.name!r} names neither an image nor a server_package to build one from"
        )
    return f"localhost/{IMAGE_REPOSITORY}:{runtime.name}-{_recipe_digest(runtime)}"


def _recipe(runtime: Runtime, tag: str) -> str:
    return DOCKERFILE.format(
        base=BASE_IMAGE, python=runtime.python, server_package=runtime.server_package, label=LABEL, tag=tag
    )


def _recipe_digest(runtime: Runtime) -> str:
    constraints = sorted(constraint.requirement for constraint in runtime.constraints)
    inputs = json.dumps([IMAGE_FORMAT, _recipe(runtime, ""), constraints])
    return hashlib.sha256(inputs.encode()).hexdigest()[:12]


def build_image(runtime: Runtime, report: Report = silent) -> Built:
    """The runtime's image, built now unless an image with its content tag exists."""
    started = time.monotonic()
    if runtime.image:
        raise EnvironmentFailure(
            f"runtime {runtime.name!r} serves with {runtime.image}, which is not built here"
        )
    tag = image_for(runtime)
    client = connect()
    try:
        if not missing_image(client, tag):
            return Built(tag, False, time.monotonic() - started)
        if missing_image(client, BASE_IMAGE):
            report(f"making the Debian base image {BASE_IMAGE} (debootstrap, once)")
            _import_base(client)
        report(f"building {tag} from {runtime.server_package}")
        with scratch_dir("image") as scratch:
            context = Path(scratch)
            _install_server(runtime, context / "site")
            (context / "Dockerfile").write_text(_recipe(runtime, tag))
            try:
                client.images.build(
                    path=str(context), tag=tag, pull=False, rm=True, forcerm=True, network_mode="host"
                )
            except Exception as error:  # the SDK's BuildError and APIError carry the build log
                log = "".join(str(line.get("stream", "")) for line in getattr(error, "build_log", []) or [])
                raise EnvironmentFailure(f"building {tag} failed: {error}\n{log[-3000:]}") from None
    finally:
        client.close()
    return Built(tag, True, time.monotonic() - started)


def _install_server(runtime: Runtime, site: Path) -> None:
    """The server package and its dependencies, installed for the image's Python and platform into
    `site` (the image's site-packages), by uv: no pip, and no network inside the build."""
    constraints = site.parent / "constraints.txt"
    constraints.write_text("".join(f"{c.requirement}\n" for c in runtime.constraints))
    command = [*uv_command(), "pip", "install", "--quiet", "--target", str(site)]
    command += ["--python-version", runtime.python, "--python-platform", IMAGE_PLATFORM]
    command += ["--only-binary", ":all:", "--no-compile", "--constraint", str(constraints)]
    run_tool([*command, runtime.server_package], f"installing {runtime.server_package} for the image")
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts written for this machine's Python


def _import_base(client: Any) -> None:
    """A minimal Debian bookworm from its mirror (debootstrap), imported as the base image."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise EnvironmentFailure("building an image needs debootstrap: `apt-get install debootstrap`")
    with scratch_dir("rootfs") as scratch:
        rootfs, archive = Path(scratch) / "rootfs", Path(scratch) / "rootfs.tar"
        run_tool([debootstrap, "--variant=minbase", "bookworm", str(rootfs), debian_mirror()], "debootstrap")
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        repository, _, tag = BASE_IMAGE.rpartition(":")
        with open(archive, "rb") as data:
            answer = client.api.import_image_from_data(data.read(), repository=repository, tag=tag)
        imported = re.search(r"[0-9a-f]{64}", str(answer))
        if imported is not None:  # podman's API names the import `latest` whatever tag was asked for
            client.images.get(imported.group(0)).tag(repository, tag)
    if missing_image(client, BASE_IMAGE):
        raise EnvironmentFailure(f"importing the Debian rootfs did not give {BASE_IMAGE}")


def debian_mirror() -> str:
    """PACKAGER_DEBIAN_MIRROR, else the Debian mirror apt uses here, else deb.debian.org."""
    if os.environ.get(MIRROR_VARIABLE):
        return os.environ[MIRROR_VARIABLE]
    sources = [*Path("/etc/apt").glob("sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]
    sources += list(Path("/etc/apt/sources.list.d").glob("*.sources"))
    entry = re.compile(r"^(?:URIs:|deb(?:\s+\[[^\]]*\])?)\s+(https?://\S+/debian)/?\s*", re.MULTILINE)
    for source in sources:
        found = entry.search(source.read_text(errors="replace"))
        if found:
            return found.group(1)
    return "http://deb.debian.org/debian"


@dataclass(frozen=True)
class ImageFacts:
    """What an image serves with, found by running it."""

    image: str
    triton_version: str
    python: str  # the stub's Python: what `python3` in the image says
    backends: list[str]
    relay: bool  # whether it has socat, which serves a container that has no network

    def differences(self, runtime: Runtime) -> list[str]:
        """How the image differs from what the runtime's profile says."""
        found = []
        if self.triton_version != runtime.triton_version:
            found.append(f"Triton {self.triton_version}, not {runtime.triton_version}")
        if self.python != runtime.python:
            found.append(f"its stub's Python is {self.python}, not {runtime.python}")
        if "python" not in self.backends:
            found.append("no python backend")
        if not self.relay and not runtime.network:
            found.append(NO_RELAY)
        return found


def check_image(image: str) -> ImageFacts:
    """Start the image's Triton on no models and ask it its version; list its backends and Python."""
    client = connect()
    try:
        if missing_image(client, image):
            raise EnvironmentFailure(
                f"no image {image} here: build it with `packager image build`, or pull it"
            )
        contents = image_contents(client, image)
        (port,) = free_ports(1)
        command = ["--model-repository=/tmp", "--model-control-mode=explicit", "--allow-grpc=false"]
        command += ["--allow-metrics=false", "--http-address=127.0.0.1", f"--http-port={port}"]
        container = client.containers.run(image, command, detach=True, network_mode="host")
        try:
            version = _server_version(port, container)
        finally:
            container.remove(force=True)
    finally:
        client.close()
    return ImageFacts(image, version, contents.python, contents.backends, contents.relay)


@dataclass(frozen=True)
class ImageContents:
    """What an image holds that serving depends on."""

    backends: list[str]  # its Triton's backends
    python: str  # the CPython minor of its `python3` (the stub's)
    relay: bool  # whether it has socat (see `relay`)


def image_contents(client: Any, image: str) -> ImageContents:
    """What an image holds, read from a shell in a container of it (half a second; no server starts)."""
    listing = (
        "echo $(ls /opt/tritonserver/backends); command -v socat || echo -; "
        "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
    )
    shell = client.containers.run(
        image, [listing], entrypoint=["/bin/sh", "-c"], network_mode="none", detach=True
    )
    try:
        shell.wait(timeout=60)  # read its output once it has all come: `run` may return before
        lines = shell.logs(stdout=True, stderr=False).decode().splitlines() + ["", "-", "?"]
    finally:
        shell.remove(force=True)
    return ImageContents(sorted(lines[0].split()), lines[2].strip() or "?", lines[1].strip() != "-")


def _server_version(port: int, container: Any) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with DIRECT.open(f"http://127.0.0.1:{port}/v2", timeout=2) as answer:
                return str(json.load(answer)["version"])
        except OSError:
            container.reload()
            if container.status == "exited":
                break
            time.sleep(0.1)
    logs = container.logs().decode(errors="replace")[-2000:]
    raise EnvironmentFailure(f"the image's Triton did not answer:\n{logs}")
