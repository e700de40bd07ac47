"""What the commands share: options, the exit codes every help ends with, JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from packager.reporting import Report, silent, to_stderr

EXIT_CODES = """\b
Exit codes:
  0  success
  1  the models or inputs are wrong (the output says what to fix)
  2  usage error (unknown option, or an argument that names no model)
  3  a tool or service the command needs failed
  70 a bug in the packager (PACKAGER_DEBUG=1 shows the traceback)"""

MODELS_ARGUMENT = click.argument("models", nargs=-1, metavar="[MODEL|PATH]...")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print a JSON report instead of text.")
RUNTIME_OPTION = click.option(
    "--runtime", help="The target runtime from packager.toml (default: its [packager] runtime)."
)
CPU_OPTION = click.option(
    "--cpu",
    is_flag=True,
    help="Run KIND_GPU instance groups as KIND_CPU (the servers here have no GPU): only the staged copy of "
    "config.pbtxt changes, never the model directory or the artifact (packager.toml: gpu_as_cpu = true).",
)

SIGN_KEY_OPTION = click.option(
    "--sign-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="PACKAGER_SIGNING_KEY",
    help="Sign the manifest with this Ed25519 private key (PEM; env PACKAGER_SIGNING_KEY).",
)
PUBLIC_KEY_OPTION = click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="PACKAGER_VERIFY_KEY",
    help="Verify signatures with this Ed25519 public key (env PACKAGER_VERIFY_KEY; default: packager.toml [signing]).",
)
OUT_OPTION = click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the archives (default: dist/).",
)
STAGING_OPTION = click.option(
    "--staging", help="Staging store URI (env PACKAGER_STAGING_URI; default: packager.toml)."
)
PRODUCTION_OPTION = click.option(
    "--production", help="Production store URI (env PACKAGER_PRODUCTION_URI; default: packager.toml)."
)
BRANCH_OPTION = click.option(
    "--branch",
    help="The branch being pushed (default: the CI system's, else git's): production branches publish to production.",
)
COMMIT_OPTION = click.option(
    "--commit", help="The commit being pushed (default: the CI system's, else git HEAD)."
)
Command = TypeVar("Command", bound=Callable[..., Any])


def publishing_options(command: Command) -> Command:
    """The options of the commands that publish (push, ci): the revision, runtime, stores and keys."""
    for option in reversed(
        [
            BRANCH_OPTION,
            COMMIT_OPTION,
            RUNTIME_OPTION,
            STAGING_OPTION,
            PRODUCTION_OPTION,
            OUT_OPTION,
            SIGN_KEY_OPTION,
            PUBLIC_KEY_OPTION,
        ]
    ):
        command = option(command)
    return command


def load_timeout_option(default: float) -> Callable[[Command], Command]:
    """--load-timeout SECONDS, defaulting to `default` (the triton stage's LOAD_TIMEOUT: this module does not
    import the pipeline, so that --help stays fast)."""
    return click.option(
        "--load-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=default,
        show_default=True,
        metavar="SECONDS",
        help="How long each Triton model may take to load (its initialize included) before it counts as hung.",
    )


ARTIFACT_OPTION = click.option(
    "--artifact",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A built artifact, verified against its manifest (and signature) as it is unpacked.",
)


# The workspace the root command found (context.obj), passed to each command that takes one.
pass_workspace = click.pass_obj


def echo_json(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=2))


def reporter(as_json: bool) -> Report:
    """Where a command's progress goes: stderr, or nowhere under `--json` (whose reader takes the document
    on stdout alone, and would have to tell progress from warnings on stderr)."""
    return silent if as_json else to_stderr
