"""The sandbox a local Triton runs in: model code is untrusted, so the server and everything it starts see
only what serving needs.

bubblewrap (`bwrap`, Debian's `bubblewrap`) runs the server in new user, PID, IPC, UTS and network
namespaces with no capabilities: the system directories and the given paths read-only (the model
repository and what it links to, the server and its interpreter), the relay directory writable, a private
/tmp, /dev (so /dev/shm) and /proc, and an allow-listed environment. Credentials, signing keys, the home
directory and the monorepo are simply not there, and whatever Triton unpacks under /tmp or maps in
/dev/shm vanishes with the sandbox, however the server ends. The network namespace holds nothing but its
own loopback: the packager reaches the server through the relays (see `relay`); model code reaches no
service of this machine, no metadata address and no DNS. A runtime with `network = true` shares the
machine's network instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from packager.errors import EnvironmentFailure

SYSTEM_DIRECTORIES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")
# What Triton, its python stubs and their interpreters need from the environment; nothing else passes.
ALLOWED_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ")
ALLOWED_PREFIXES = ("LC_",)
HOME = "/tmp"
NOBODY = 65534
# Where a sandbox that nests marks itself. Inside one, a new /proc cannot be mounted (the outer one is not
# fully visible), so the inner sandbox shows the outer's: the gate's processes, which hold no credentials.
NESTING_MARKER = "/run/packager-sandbox-nests"


def allowed_environment(environment: dict[str, str]) -> dict[str, str]:
    """The variables of `environment` that may reach model code."""
    return {
        name: value
        for name, value in environment.items()
        if name in ALLOWED_VARIABLES or name.startswith(ALLOWED_PREFIXES)
    }


@dataclass(frozen=True)
class Sandbox:
    """What a sandboxed command sees: `readable` paths (and the system directories) read-only, `writable`
    ones (a path inside another takes its own mode), `hidden` files as empty ones, `environment` (already
    allow-listed) with HOME set to `home` (by default the private /tmp), and the machine's network only
    with `network`. It starts in `cwd` (default: HOME)."""

    readable: tuple[Path, ...]
    environment: dict[str, str] = field(default_factory=dict)
    writable: tuple[Path, ...] = ()
    network: bool = False
    hidden: tuple[Path, ...] = ()
    home: str = HOME
    cwd: str = ""
    purpose: str = "the local launcher runs Triton sandboxed"
    # Whether its commands sandbox theirs in turn (the gate's replays): root inside, without
    # capabilities, cannot (its uid map is refused), so such a sandbox of root's runs as NOBODY.
    nests: bool = False

    def command(self, argv: list[str]) -> list[str]:
        """`argv` wrapped to run inside the sandbox."""
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise EnvironmentFailure(
                f"{self.purpose} by bubblewrap, which is not installed: `apt-get install bubblewrap` (or your "
                "distribution's package); model code must never see the credentials and keys of the machine "
                "that tests it"
            )
        command = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        command += [] if self.network else ["--unshare-net"]
        command += ["--die-with-parent", "--cap-drop", "ALL", "--clearenv"]
        if self.nests and os.getuid() == 0:
            command += ["--uid", str(NOBODY), "--gid", str(NOBODY)]
        proc = ["--ro-bind", "/proc", "/proc"] if os.path.exists(NESTING_MARKER) else ["--proc", "/proc"]
        for directory in SYSTEM_DIRECTORIES:
            command += ["--ro-bind-try", directory, directory]
        command += ["--dev", "/dev", *proc, "--tmpfs", "/tmp"]
        command += ["--ro-bind", "/dev/null", NESTING_MARKER] if self.nests else []
        binds = {path: "--ro-bind" for path in self.readable} | {path: "--bind" for path in self.writable}
        for path in sorted(binds):  # a directory before what lies inside it
            command += [binds[path], str(path), str(path)]
        for path in sorted(set(self.hidden)):
            command += ["--ro-bind", "/dev/null", str(path)]
        for name, value in sorted({**self.environment, "HOME": self.home}.items()):
            command += ["--setenv", name, value]
        return [*command, "--chdir", self.cwd or self.home, "--", *argv]


def linked_targets(repository: Path) -> set[Path]:
    """Where the symlinks inside a model repository point outside it (a cached unpacked environment)."""
    targets = set()
    for directory, subdirectories, files in os.walk(repository):
        for name in [*subdirectories, *files]:
            path = Path(directory) / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(repository.resolve()):
                    targets.add(target)
    return targets
