"""The local launcher: the server binary of a ServerInstall run as a process group on this machine."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from packager.reporting import Report, silent
from packager.settings import Runtime
from packager.triton.cleanup import die_with_parent, stop_process_group
from packager.triton.install import ServerInstall, install_server
from packager.triton.launcher import READY_TIMEOUT, Ports, TritonServer, server_arguments
from packager.triton.relay import wired
from packager.triton.sandbox import Sandbox, allowed_environment, linked_targets


class LocalLauncher:
    """Runs the server binary of a ServerInstall as a local process group, in a sandbox (with the
    machine's network only when `network`)."""

    name = "local"
    unpacked_envs = True

    def __init__(
        self,
        install: ServerInstall,
        *,
        ready_timeout: float = READY_TIMEOUT,
        network: bool = False,
        gpu_as_cpu: bool = False,
    ) -> None:
        self.install = install
        self.ready_timeout = ready_timeout
        self.network = network
        self.gpu_as_cpu = gpu_as_cpu
        self.backends = frozenset(
            entry.name for entry in (install.directory / "backends").iterdir() if entry.is_dir()
        )

    @classmethod
    def for_runtime(cls, runtime: Runtime, report: Report = silent) -> LocalLauncher:
        """A launcher of the runtime's server, installed into the cache first if it is not there yet."""
        return cls(install_server(runtime, report), network=runtime.network, gpu_as_cpu=runtime.gpu_as_cpu)

    @contextmanager
    def start(
        self, repository: Path, log_path: Path, *, lend_interpreter: bool = True, ports: Ports = Ports()
    ) -> Iterator[TritonServer]:
        with wired(ports, self.network, log_path) as wiring:
            command = [
                str(self.install.binary),
                *server_arguments(repository, wiring.listen),
                f"--backend-directory={self.install.directory / 'backends'}",
                f"--cache-directory={self.install.directory / 'caches'}",
            ]
            interpreter = self.install.interpreter
            lent = (interpreter.prefix, interpreter.libdir) if lend_interpreter else ()
            environment = allowed_environment(dict(os.environ))
            if lend_interpreter:
                environment["PATH"] = f"{self.install.bin_dir}{os.pathsep}{environment.get('PATH', '')}"
                environment["LD_LIBRARY_PATH"] = str(interpreter.libdir)
            sandbox = Sandbox(
                readable=(repository, *linked_targets(repository), self.install.root, *lent),
                environment=environment,
                writable=(wiring.directory,) if wiring.directory else (),
                network=self.network,
            )
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    sandbox.command(wiring.command(command)),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={},
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            try:
                server = TritonServer(wiring.process(process), wiring.endpoints, log_path=log_path)
                server.wait_ready(self.ready_timeout)
                yield server
            finally:
                stop_process_group(process)
