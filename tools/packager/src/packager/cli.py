"""The `packager` command line: a thin layer over the library, one command per pipeline step."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import click

from packager import __version__
from packager.discovery import ModelDir, discover_models, find_repo_root
from packager.errors import ExitCode, PackagerError
from packager.validation import validate_models

EXIT_CODES = """\b
Exit codes:
  0  success
  1  the models or inputs are wrong (the output says what to fix)
  2  usage error (unknown option, or an argument that names no model)
  3  a tool or service the command needs failed"""

MODELS_ARGUMENT = click.argument("models", nargs=-1, metavar="[MODEL|PATH]...")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print a JSON report instead of text.")


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
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
    context.obj = root or find_repo_root(Path.cwd())


def _models(context: click.Context, args: tuple[str, ...]) -> list[ModelDir]:
    root: Path | None = context.obj
    return discover_models(args, root)


@cli.command(epilog=EXIT_CODES)
@MODELS_ARGUMENT
@JSON_OPTION
@click.pass_context
def validate(context: click.Context, models: tuple[str, ...], as_json: bool) -> ExitCode:
    """Check model directories offline, before anything runs (default: every model under models/).

    Reports every problem of every model at once, as path:line:col: message.
    """
    reports = validate_models(_models(context, models))
    failed = [report for report in reports if not report.ok]
    if as_json:
        click.echo(
            json.dumps({"ok": not failed, "models": [report.to_json() for report in reports]}, indent=2)
        )
    else:
        for report in reports:
            for diagnostic in report.diagnostics:
                click.echo(str(diagnostic))
        problems = sum(len(report.diagnostics) for report in failed)
        summary = (
            f"{len(reports)} model{'s' if len(reports) != 1 else ''} checked: {len(reports) - len(failed)} ok"
        )
        if failed:
            summary += f", {len(failed)} with {problems} problem{'s' if problems != 1 else ''}"
        click.echo(summary, err=True)
    return ExitCode.MODEL_ERROR if failed else ExitCode.OK


def main() -> None:
    """Run the CLI, turning every expected failure into a message and an exit code (never a traceback)."""
    try:
        code = cli.main(prog_name="packager", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.Abort:
        click.echo("packager: interrupted", err=True)
        code = 130
    except PackagerError as error:
        click.echo(f"packager: error: {error}", err=True)
        code = error.exit_code
    except Exception as error:  # a bug: say so briefly, with the traceback on request
        if os.environ.get("PACKAGER_DEBUG"):
            traceback.print_exc()
        click.echo(f"packager: internal error: {error!r} (set PACKAGER_DEBUG=1 for the traceback)", err=True)
        code = ExitCode.ENVIRONMENT_ERROR
    sys.exit(int(code or 0))
