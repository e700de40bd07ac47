"""The quality gate on one model's targets: Black, mypy and its tests (its cases through a real Triton),
through Pants, as `./pants lint check test models/<name>::`.

A model's tests are its authors' code, so the gate's Pants runs in a sandbox (bubblewrap) where the
packager is out of reach: its own PID namespace (no other process of this machine, so no
`/proc/<pid>/environ` of ours), an environment without credentials (`pants_environment`), none of the home
directory but Pants' caches, the repository read-only but for Pants' outputs, the packager's cache
read-only (what the gate's replays use is prepared before, outside), every file a credential variable
names hidden, no container engine, and a network namespace of its own whose only way out is a proxy to
the package indexes (`egress`). Pants runs without its daemon there, since a daemon outside would run the
tests outside.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from packager.cache import cache_root
from packager.ci.egress import INSIDE_PORT, egress_proxy, index_hosts
from packager.errors import EnvironmentFailure
from packager.modeldir import ModelDir
from packager.pipeline import pants_environment
from packager.scratch import scratch_dir
from packager.subprocesses import SHOWN_LINES
from packager.triton import Sandbox, socat_binary

GOALS = ("lint", "check", "test")
# What Pants writes inside the repository: its work directory, its outputs, its daemon's files.
PANTS_OUTPUTS = (".pants.d", "dist", ".pids")
# The container engine is root on its machine: the gate never gets it (its replays run locally).
ENGINE_VARIABLES = ("DOCKER_HOST", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")
# Variables whose value, when it names a file, names a secret (a key, a token, credentials).
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|CREDENTIAL|PASSWORD|AUTH|CONFIG_FILE|KUBECONFIG|NETRC")
PROXY = f"http://127.0.0.1:{INSIDE_PORT}"
LOOPBACK = "127.0.0.1,localhost,::1"  # never through the proxy: the gate's replays talk to their servers
# The relay inside: 127.0.0.1:PORT to the proxy's socket; then Pants in its place.
INSIDE_SCRIPT = (
    f'socat -lf /dev/null TCP-LISTEN:{INSIDE_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:"$1" & '
    'shift; exec "$@"'
)


@dataclass(frozen=True)
class GateResult:
    """Whether the gate passed for one model, how long it took, and its full log."""

    passed: bool
    seconds: float
    command: list[str]
    log: Path

    def tail(self, lines: int = SHOWN_LINES) -> str:
        """The end of the log, where Pants says what failed."""
        text = self.log.read_text(errors="replace").strip() if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


def run_gate(root: Path, model: ModelDir, *, pants: list[str], log: Path) -> GateResult:
    """`<pants> --no-pantsd lint check test <model>::` in the repository, sandboxed, its output to `log`."""
    spec = f"{model.path.resolve().relative_to(root.resolve()).as_posix()}::"
    command = [*pants, "--no-pantsd", *GOALS, spec]
    log.parent.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    started = time.monotonic()
    log.write_bytes(b"")  # then appended to by Pants and by the proxy's refusals alike
    with scratch_dir("gate") as scratch, log.open("a") as output:
        proxy_socket = scratch / "egress.sock"
        with egress_proxy(proxy_socket, index_hosts(root / "pants.toml", environment), log):
            sandbox = gate_sandbox(root, environment, scratch=scratch, pants=pants[0])
            wrapped = ["/bin/sh", "-c", INSIDE_SCRIPT, "sh", str(proxy_socket), *command]
            try:
                result = subprocess.run(
                    sandbox.command(wrapped),
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env={},
                )
            except OSError as error:
                raise EnvironmentFailure(f"cannot run Pants ({shlex.join(command)}): {error}") from error
    return GateResult(result.returncode == 0, time.monotonic() - started, command, log)


def gate_sandbox(root: Path, environment: dict[str, str], *, scratch: Path, pants: str) -> Sandbox:
    """What the gate's Pants sees of this machine (see the module's docstring); `pants`, the command
    that runs it, is seen wherever it lies."""
    socat_binary()  # the relay to the proxy: refused before anything starts when it is missing
    home = Path(environment.get("HOME") or Path.home())
    cache = Path(environment.get("XDG_CACHE_HOME") or home / ".cache")
    pants_caches = [cache / "pants"]
    pants_caches += [
        Path(environment[name])
        for name in ("PANTS_SETUP_CACHE", "PANTS_NAMED_CACHES_DIR", "PANTS_LOCAL_STORE_DIR")
        if environment.get(name)
    ]
    for directory in [*pants_caches, *(root / name for name in PANTS_OUTPUTS)]:
        directory.mkdir(parents=True, exist_ok=True)
    readable = [root.resolve(), Path(environment.get("PYENV_ROOT") or home / ".pyenv"), cache_root()]
    found = shutil.which(pants, path=environment.get("PATH"))
    readable += [Path(found).resolve().parent] if found else []
    readable = [path for path in readable if path.exists()]
    writable = [*pants_caches, *(root.resolve() / name for name in PANTS_OUTPUTS), scratch]
    kept = {
        name: value for name, value in pants_environment(environment).items() if name not in ENGINE_VARIABLES
    }
    proxies = {"HTTPS_PROXY": PROXY, "NO_PROXY": LOOPBACK, "no_proxy": LOOPBACK}
    kept |= {
        "HOME": str(home),
        **proxies,
        # Pants hands its subprocesses (pex, pip) only the variables this names.
        "PANTS_SUBPROCESS_ENVIRONMENT_ENV_VARS": f"+{list(proxies)!r}",
    }
    return Sandbox(
        readable=tuple(readable),
        writable=tuple(writable),
        hidden=tuple(secret_files(environment, [*readable, *writable])),
        environment=kept,
        home=str(home),
        cwd=str(root.resolve()),
        purpose="the quality gate runs the models' tests sandboxed",
        nests=True,  # its replays sandbox Triton in turn
    )


def secret_files(environment: dict[str, str], visible: list[Path]) -> list[Path]:
    """The files credential variables name (the signing key, AWS's credentials file, a web identity
    token, ...) that lie under a path the sandbox shows: each is replaced by an empty file there."""
    found = []
    for name, value in environment.items():
        path = Path(value).resolve() if SECRET_NAME.search(name) and value else None
        if (
            path is not None
            and path.is_file()
            and any(path.is_relative_to(place.resolve()) for place in visible)
        ):
            found.append(path)
    return found
