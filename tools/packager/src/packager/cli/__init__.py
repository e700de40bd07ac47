"""The `packager` command line: a thin layer over the library, one command per pipeline step.

The commands live in modules by what they act on (`models`, `serving`, `artifacts`, `publishing`), each
imported only when one of its commands runs or shows its help: `packager --version` and `packager --help`
load none of the pipeline."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType

import click

from packager import __version__
from packager.cli.options import EXIT_CODES
from packager.errors import ExitCode, PackagerError

# Each command: the module under packager.cli that defines it, the function's name there, and the one
# line `packager --help` shows for it.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "validate": ("models", "validate", "Check model directories offline."),
    "env": ("models", "env", "Build or reuse each model's packed Python environment."),
    "lock": ("models", "lock_command", "Pin each model's requirements into requirements.lock."),
    "new": ("models", "new", "Create a model directory that validates and replays as it is."),
    "adopt": ("models", "adopt_command", "Lay out an existing Triton model as a model directory here."),
    "pull": ("models", "pull_weights", "Fetch these models' DVC-tracked weights, then check them."),
    "config": ("models", "config_command", "Show the configuration in effect."),
    "serve": ("serving", "serve", "Serve a model or an artifact in Triton until Ctrl-C."),
    "mme": ("endpoint", "mme", "Emulate a SageMaker multi-model endpoint on a local Triton."),
    "replay": ("serving", "replay", "Replay models' test cases through a real Triton."),
    "loadtest": ("loadtest", "loadtest", "Load-test a model at rising concurrency; find its knee."),
    "image": ("serving", "image", "Build or check a container runtime's Triton image."),
    "build": ("artifacts", "build", "Build <model>_<version>.tar.gz for each model."),
    "verify": ("artifacts", "verify", "Check an artifact against its manifest and signature."),
    "keygen": ("artifacts", "keygen", "Create an Ed25519 key pair for signing manifests."),
    "push": ("publishing", "push", "Build, replay and publish models by branch."),
    "ci": ("publishing", "ci_command", "The pipeline on a push, for the models it affects."),
    "releases": ("publishing", "releases", "Show models' release history."),
    "promote": ("publishing", "promote_command", "Copy a tested staged artifact into production."),
    "rollback": ("publishing", "rollback_command", "Move a model's current version back."),
}


class LazyGroup(click.Group):
    """The root command: its subcommands are imported when one is run or asked for its help."""

    def list_commands(self, context: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, context: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, function, summary = COMMANDS[name]
        command = getattr(importlib.import_module(f"packager.cli.{module}"), function)
        assert isinstance(command, click.Command), f"packager.cli.{module}.{function}"
        command.short_help = summary
        return command

    def format_commands(self, context: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, _, summary) in sorted(COMMANDS.items())])


@click.group(cls=LazyGroup, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="packager")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PACKAGER_ROOT",
    help="The monorepo root (default: the nearest directory above the cwd with packager.toml or pants.toml).",
)
@click.pass_context
def cli(context: click.Context, root: Path | None) -> None:
    """Validate, test and ship the Triton models of a model monorepo.

    MODEL arguments are names of directories under models/ or paths to model directories (a model
    directory holds model_version.txt); a path above several models means all of them.
    """
    from packager.workspace import Workspace  # the pipeline, loaded only when a command runs

    context.obj = Workspace.find(root)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Run the CLI, turning every expected failure into a message and an exit code (never a traceback)."""
    signal.signal(signal.SIGTERM, _terminate)  # so that servers are stopped and cleaned up on SIGTERM too
    try:
        code = cli.main(prog_name="packager", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.Abort:
        click.echo("packager: interrupted", err=True)
        code = 130
    except PackagerError as error:
        diagnostics = getattr(error, "diagnostics", None)  # preflight's NotServable: located problems
        if diagnostics:
            for diagnostic in diagnostics:
                click.echo(str(diagnostic))
            click.echo("packager: fix the problems above first", err=True)
        else:
            click.echo(f"packager: error: {error}", err=True)
        code = error.exit_code
    except OSError as error:  # the machine refused: a full disk, a path we may not write
        where = f": {error.filename}" if error.filename else ""
        click.echo(f"packager: error: {error.strerror or error}{where}", err=True)
        code = ExitCode.ENVIRONMENT_ERROR
    except Exception as error:  # a bug: say so briefly, with the traceback on request
        if os.environ.get("PACKAGER_DEBUG"):
            traceback.print_exc()
        click.echo(
            f"packager: internal error (a bug in the packager): {error!r}; "
            "rerun with PACKAGER_DEBUG=1 for the traceback and report it",
            err=True,
        )
        code = ExitCode.INTERNAL_ERROR
    sys.exit(int(code or 0))
