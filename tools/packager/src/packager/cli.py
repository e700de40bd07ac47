"""The `packager` command line: a thin layer over the library, one command per pipeline step."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click

from packager import __version__
from packager.config import Config, Runtime, load_config
from packager.discovery import ModelDir, discover_models, find_repo_root
from packager.environments import ensure_environment, env_path, place
from packager.errors import ExitCode, PackagerError
from packager.reports import replay_table, summary, table, write_junit
from packager.replay import PROTOCOLS, replay_model
from packager.scaffold import scaffold
from packager.serving import ENV_MODES, NotServable, launched, prepare
from packager.validation import validate_models
from packager.weights import check_weights, pull

EXIT_CODES = """\b
Exit codes:
  0  success
  1  the models or inputs are wrong (the output says what to fix)
  2  usage error (unknown option, or an argument that names no model)
  3  a tool or service the command needs failed"""

MODELS_ARGUMENT = click.argument("models", nargs=-1, metavar="[MODEL|PATH]...")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print a JSON report instead of text.")
RUNTIME_OPTION = click.option(
    "--runtime", help="The target runtime from packager.toml (default: its [packager] runtime)."
)
ENV_MODE_OPTION = click.option(
    "--env-mode",
    type=click.Choice(ENV_MODES),
    default="unpacked",
    show_default=True,
    help="Serve the environment unpacked from the cache (fast loads) or as the tarball that ships.",
)


@dataclass
class Workspace:
    """What every command shares: the monorepo root (if any) and its configuration."""

    root: Path | None
    config: Config

    def models(self, args: tuple[str, ...]) -> list[ModelDir]:
        return discover_models(args, self.root)

    def runtime(self, name: str | None) -> Runtime:
        return self.config.runtime(name)

    def log_dir(self) -> Path:
        """Where server logs go: dist/logs in the monorepo, else a temporary directory."""
        directory = (
            self.root / "dist" / "logs" if self.root else Path(tempfile.mkdtemp(prefix="packager-logs-"))
        )
        directory.mkdir(parents=True, exist_ok=True)
        return directory


pass_workspace = click.make_pass_decorator(Workspace)


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
    root = root or find_repo_root(Path.cwd())
    context.obj = Workspace(root, load_config(root))


@cli.command(epilog=EXIT_CODES)
@MODELS_ARGUMENT
@JSON_OPTION
@pass_workspace
def validate(workspace: Workspace, models: tuple[str, ...], as_json: bool) -> ExitCode:
    """Check model directories offline, before anything runs (default: every model under models/).

    Reports every problem of every model at once, as path:line:col: message.
    """
    reports = validate_models(workspace.models(models))
    failed = [report for report in reports if not report.ok]
    if as_json:
        _echo_json({"ok": not failed, "models": [report.to_json() for report in reports]})
    else:
        for report in reports:
            for diagnostic in report.diagnostics:
                click.echo(str(diagnostic))
        problems = sum(len(report.diagnostics) for report in failed)
        summary_line = f"{_plural(len(reports), 'model')} checked: {len(reports) - len(failed)} ok"
        if failed:
            summary_line += f", {len(failed)} with {_plural(problems, 'problem')}"
        click.echo(summary_line, err=True)
    return ExitCode.MODEL_ERROR if failed else ExitCode.OK


@cli.command(epilog=EXIT_CODES)
@MODELS_ARGUMENT
@RUNTIME_OPTION
@JSON_OPTION
@pass_workspace
def env(workspace: Workspace, models: tuple[str, ...], runtime: str | None, as_json: bool) -> ExitCode:
    """Build (or reuse) each model's python_env.tar.gz and put it where EXECUTION_ENV_PATH points.

    Environments are cached by content in PACKAGER_CACHE (default ~/.cache/packager): an unchanged one is
    reused at once, and models with identical requirements share one.
    """
    target = workspace.runtime(runtime)
    rows, records = [], []
    for model in workspace.models(models):
        report, environment = prepare(model, target)
        placed = []
        if environment is not None:
            for triton in report.triton_models.values():
                destination = env_path(triton)
                if destination is not None:
                    place(environment, destination)
                    placed.append(destination)
        size = f"{environment.tarball.stat().st_size / 1e6:.1f} MB" if environment else "-"
        state = ("cached" if environment.cache_hit else "built") if environment else "no python step uses one"
        seconds = f"{environment.seconds:.2f}" if environment else "-"
        rows.append(
            [model.name, environment.key[:12] if environment else "-", state, size, seconds, str(len(placed))]
        )
        records.append(
            {
                "model": model.name,
                "runtime": target.name,
                "key": environment.key if environment else None,
                "cache_hit": environment.cache_hit if environment else None,
                "tarball": str(environment.tarball) if environment else None,
                "seconds": round(environment.seconds, 3) if environment else None,
                "placed": [str(path) for path in placed],
            }
        )
    if as_json:
        _echo_json({"runtime": target.name, "environments": records})
    else:
        click.echo(table(rows, ["model", "env", "state", "size", "seconds", "placed in steps"]))
    return ExitCode.OK


@cli.command(epilog=EXIT_CODES)
@click.argument("model", metavar="MODEL|PATH")
@RUNTIME_OPTION
@ENV_MODE_OPTION
@pass_workspace
def serve(workspace: Workspace, model: str, runtime: str | None, env_mode: str) -> ExitCode:
    """Serve one model directory in a local Triton until Ctrl-C, printing its endpoints."""
    found = workspace.models((model,))
    if len(found) != 1:
        raise click.UsageError(f"serve takes one model; {model} holds {len(found)}")
    chosen = found[0]
    target = workspace.runtime(runtime)
    log_path = workspace.log_dir() / f"{chosen.name}-serve.log"
    report, environment = prepare(chosen, target)
    with launched(report, environment, target, log_path, env_mode) as served:
        endpoints = served.server.endpoints
        click.echo(f"serving {chosen.name} (runtime {target.name}, Triton {target.triton_version})")
        click.echo(f"  HTTP     http://{endpoints.http}/v2/models/{served.top_model}")
        click.echo(f"  gRPC     {endpoints.grpc}")
        click.echo(f"  metrics  http://{endpoints.metrics}/metrics")
        click.echo(f"  models   {', '.join(sorted(report.triton_models))}")
        click.echo(f"  log      {log_path}")
        click.echo("Ctrl-C stops the server and removes everything it started.")
        while served.server.alive():
            time.sleep(0.5)
        click.echo(f"Triton exited unexpectedly:\n{served.server.log_excerpt()}", err=True)
    return ExitCode.ENVIRONMENT_ERROR


@cli.command(epilog=EXIT_CODES)
@MODELS_ARGUMENT
@RUNTIME_OPTION
@ENV_MODE_OPTION
@click.option(
    "--protocol",
    "protocols",
    type=click.Choice(PROTOCOLS),
    multiple=True,
    help="Only this protocol (repeatable; default: both).",
)
@click.option(
    "--junit-xml", type=click.Path(dir_okay=False, path_type=Path), help="Also write a JUnit XML report here."
)
@JSON_OPTION
@pass_workspace
def replay(
    workspace: Workspace,
    models: tuple[str, ...],
    runtime: str | None,
    env_mode: str,
    protocols: tuple[str, ...],
    junit_xml: Path | None,
    as_json: bool,
) -> ExitCode:
    """Replay each model's test cases through a real Triton, over HTTP and gRPC, and compare outputs.

    For each model: validate, check weights, build or reuse the environment, start Triton, load every
    Triton model, send every case in tests/cases/, compare within each output's tolerance.
    """
    target = workspace.runtime(runtime)
    log_dir = workspace.log_dir()
    replays = []
    for model in workspace.models(models):
        if not as_json:
            click.echo(f"replaying {model.name} on runtime {target.name} ...", err=True)
        replays.append(
            replay_model(
                model,
                target,
                log_dir / f"{model.name}-replay.log",
                env_mode,
                protocols or PROTOCOLS,
                not as_json,
            )
        )
    if junit_xml is not None:
        write_junit(replays, junit_xml)
    if as_json:
        _echo_json(
            {"passed": all(item.passed for item in replays), "models": [item.to_json() for item in replays]}
        )
    else:
        click.echo(replay_table(replays))
        click.echo(summary(replays), err=True)
    codes = [item.error_code for item in replays if item.error is not None]
    if ExitCode.ENVIRONMENT_ERROR in codes:
        return ExitCode.ENVIRONMENT_ERROR
    return ExitCode.OK if all(item.passed for item in replays) else ExitCode.MODEL_ERROR


@cli.command(name="pull", epilog=EXIT_CODES)
@MODELS_ARGUMENT
@click.option("--remote", help="The DVC remote to pull from (default: the repository's default remote).")
@pass_workspace
def pull_weights(workspace: Workspace, models: tuple[str, ...], remote: str | None) -> ExitCode:
    """Fetch the DVC-tracked weights of these models only (`dvc pull` of their pointers), then check them."""
    chosen = workspace.models(models)
    pull(chosen, remote)
    problems = [problem for model in chosen for problem in check_weights(model)]
    for problem in problems:
        click.echo(str(problem))
    click.echo(
        f"weights of {_plural(len(chosen), 'model')}: {'ok' if not problems else 'see above'}", err=True
    )
    return ExitCode.MODEL_ERROR if problems else ExitCode.OK


@cli.command(epilog=EXIT_CODES)
@click.argument("name")
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create it (default: <root>/models).",
)
@pass_workspace
def new(workspace: Workspace, name: str, models_dir: Path | None) -> ExitCode:
    """Create a model directory that passes validate and replay as it is: python pre- and post-processing
    steps wired by an ensemble, a requirements.txt, test cases and a BUILD file."""
    parent = models_dir or (workspace.root / "models" if workspace.root else None)
    if parent is None:
        raise click.UsageError("not inside a model monorepo: give --models-dir")
    created = scaffold(parent, name)
    click.echo(f"created {created}; next: packager validate {name} && packager replay {name}")
    return ExitCode.OK


def _echo_json(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=2))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


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
    except NotServable as error:
        for diagnostic in error.diagnostics:
            click.echo(str(diagnostic))
        click.echo("packager: fix the problems above first", err=True)
        code = error.exit_code
    except PackagerError as error:
        click.echo(f"packager: error: {error}", err=True)
        code = error.exit_code
    except Exception as error:  # a bug: say so briefly, with the traceback on request
        if os.environ.get("PACKAGER_DEBUG"):
            traceback.print_exc()
        click.echo(f"packager: internal error: {error!r} (set PACKAGER_DEBUG=1 for the traceback)", err=True)
        code = ExitCode.ENVIRONMENT_ERROR
    sys.exit(int(code or 0))
