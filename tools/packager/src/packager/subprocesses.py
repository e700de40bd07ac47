"""Running the external tools the packager drives (pip, venv, conda, DVC), with their output on failure."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from packager.errors import EnvironmentFailure

SHOWN_LINES = 25
# What a tool that runs third-party code (pip building a model's requirements) may see of our environment:
# enough to find interpreters, indexes, proxies and caches; never credentials.
TOOL_VARIABLES = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYENV_ROOT",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)  # fmt: skip
TOOL_PREFIXES = ("LC_", "PIP_", "UV_", "CONDA_")


class ToolFailure(EnvironmentFailure):
    """A tool exited non-zero; `output` holds what it printed."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


def credential_free(environment: dict[str, str]) -> dict[str, str]:
    """The variables of `environment` a tool running third-party code may see."""
    return {
        name: value
        for name, value in environment.items()
        if name in TOOL_VARIABLES or name.startswith(TOOL_PREFIXES)
    }


def run_tool(command: list[str], what: str, *, cwd: Path | None = None, untrusted: bool = False) -> None:
    """Run `command`; raise ToolFailure with the tail of its output when it fails. An `untrusted` tool
    (one that runs code from the model's requirements) gets a credential-free environment."""
    environment = credential_free(dict(os.environ)) if untrusted else None
    try:
        result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=environment)
    except OSError as error:
        raise ToolFailure(f"{what} could not start: {error}", str(error)) from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        tail = "\n".join(output.splitlines()[-SHOWN_LINES:])
        raise ToolFailure(f"{what} failed (exit {result.returncode}):\n{tail}", output)
