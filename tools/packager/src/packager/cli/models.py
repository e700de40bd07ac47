"""Commands on model directories and settings: validate, env, lock, new, adopt, pull, config."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from packager.cli.options import (
    EXIT_CODES,
    JSON_OPTION,
    MODELS_ARGUMENT,
    RUNTIME_OPTION,
    echo_json,
    pass_workspace,
    reporter,
)
from packager.environments import env_builder_for, lock_model, place_in_steps
from packager.errors import ExitCode
from packager.modeldir import (
    CASES_DIR,
    REQUIREMENTS_FILE,
    TRITON_CONFIG,
    ModelDir,
    check_weights,
    display_path,
    pull,
    scaffold,
)
from packager.pipeline import adopt_model
from packager.preflight import prepare
from packager.tables import plural, table
from packager.triton import TritonCompleter
from packager.validation import ModelReport, validate_models
from packager.workspace import Workspace


@click.command(epilog=EXIT_CODES)
@MODELS_ARGUMENT
@RUNTIME_OPTION
@JSON_OPTION
@pass_workspace
def validate(
    workspace: Workspace, *, models: tuple[str, ...], runtime: str | None, as_json: bool
) -> ExitCode:
    """Check model directories before anything runs (default: every model under models/).

    Reports every problem of every model at once, as path:line:col: message (warnings too, which do not
    fail it). Where Triton completes a model's config as it loads it (model.py's auto_complete_config), the
    runtime's sandboxed Triton is asked for that config once and its answer cached by content, so that the
    cases and ensembles are judged against what Triton loads; everything else is checked offline.
    """
    target = workspace.runtime(runtime)
    progress = reporter(as_json)
    complete = TritonCompleter.for_runtime(
        target, env_builder_for(target, progress), build_envs=False, report=progress
    )
    reports = validate_models(workspace.models(models), complete)
    failed = [report for report in reports if not report.ok]
    if as_json:
        echo_json({"ok": not failed, "models": [report.to_json() for report in reports]})
    else:
        for report in reports:
            _render_report(report)
        problems = sum(len(report.diagnostics) for report in failed)
        summary_line = f"{plural(len(reports), 'model')} checked: {len(reports) - len(failed)} ok"
        if failed:
            summary_line += f", {len(failed)} with {plural(problems, 'problem')}"
        warnings = sum(len(report.warnings) for report in reports)
        if warnings:
            summary_line += f" ({plural(warnings, 'warning')})"
        click.echo(summary_line, err=True)
    return ExitCode.MODEL_ERROR if failed else ExitCode.OK


def _render_report(report: ModelReport) -> None:
    """Problems and warnings on stdout, which config Triton completed on stderr."""
    for note in report.notes():
        click.echo(note, err=True)
    for diagnostic in report.diagnostics:
        click.echo(str(diagnostic))
    for warning in report.warnings:
        click.echo(f"{warning.location()}: warning: {warning.message}")


@click.command(epilog=EXIT_CODES)
@MODELS_ARGUMENT
@RUNTIME_OPTION
@JSON_OPTION
@pass_workspace
def env(workspace: Workspace, *, models: tuple[str, ...], runtime: str | None, as_json: bool) -> ExitCode:
    """Build (or reuse) each model's python_env.tar.gz and put it where EXECUTION_ENV_PATH points.

    Environments are cached by content in PACKAGER_CACHE (default ~/.cache/packager): an unchanged one is
    reused at once, and models with identical requirements share one.
    """
    target = workspace.runtime(runtime)
    report = reporter(as_json)
    builder = env_builder_for(target, report)
    rows, records = [], []
    for model in workspace.models(models):
        validated, environment = prepare(model, target, builder, report=report)
        placed = place_in_steps(environment, validated.triton_models) if environment is not None else []
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
        echo_json({"runtime": target.name, "environments": records})
    else:
        click.echo(table(rows, ["model", "env", "state", "size", "seconds", "placed in steps"]))
    return ExitCode.OK


@click.command(name="pull", epilog=EXIT_CODES)
@MODELS_ARGUMENT
@click.option("--remote", help="The DVC remote to pull from (default: the repository's default remote).")
@JSON_OPTION
@pass_workspace
def pull_weights(
    workspace: Workspace, *, models: tuple[str, ...], remote: str | None, as_json: bool
) -> ExitCode:
    """Fetch the DVC-tracked weights of these models only (`dvc pull` of their pointers), then check them."""
    chosen = workspace.models(models)
    pull(chosen, remote)
    problems = [problem for model in chosen for problem in check_weights(model)]
    if as_json:
        echo_json(
            {
                "ok": not problems,
                "models": [model.name for model in chosen],
                "problems": [problem.to_json() for problem in problems],
            }
        )
    else:
        for problem in problems:
            click.echo(str(problem))
        outcome = "ok" if not problems else "see above"
        click.echo(f"weights of {plural(len(chosen), 'model')}: {outcome}", err=True)
    return ExitCode.MODEL_ERROR if problems else ExitCode.OK


MODELS_DIR_OPTION = click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to put the model directory (default: <root>/models).",
)


def _models_parent(workspace: Workspace, models_dir: Path | None) -> Path:
    """Where a new model directory goes: --models-dir, else the monorepo's models/."""
    if models_dir is not None:
        return models_dir
    if workspace.root is None:
        raise click.UsageError("not inside a model monorepo: give --models-dir")
    return workspace.root / "models"


@click.command(epilog=EXIT_CODES)
@click.argument("name")
@MODELS_DIR_OPTION
@RUNTIME_OPTION
@JSON_OPTION
@pass_workspace
def new(
    workspace: Workspace, *, name: str, models_dir: Path | None, runtime: str | None, as_json: bool
) -> ExitCode:
    """Create a model directory that passes validate and replay as it is: python pre- and post-processing
    steps wired by an ensemble, a requirements.txt and its lock, test cases and a BUILD file."""
    parent = _models_parent(workspace, models_dir)
    created = scaffold(parent, name)
    locked = lock_model(ModelDir(created), workspace.runtime(runtime))
    if as_json:
        echo_json({"created": str(created), "name": name, "lock": str(locked.path)})
    else:
        click.echo(f"created {created}; next: packager validate {name} && packager replay {name}")
    return ExitCode.OK


@click.command(epilog=EXIT_CODES)
@click.argument("source", metavar="PATH", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--name", help="The model directory's name (default: the name of the Triton model requests go to)."
)
@click.option(
    "--top",
    metavar="MODEL",
    help="The Triton model requests go to (default: the one no other model calls, by ensemble step or by name).",
)
@MODELS_DIR_OPTION
@RUNTIME_OPTION
@JSON_OPTION
@pass_workspace
def adopt_command(
    workspace: Workspace,
    *,
    source: Path,
    name: str | None,
    top: str | None,
    models_dir: Path | None,
    runtime: str | None,
    as_json: bool,
) -> ExitCode:
    """Lay out an existing Triton model directory or model repository (as NVIDIA's examples ship them) as a
    model directory here: nested as the contract wants, with model_version.txt, a BUILD file, its
    requirements.txt locked and wired into EXECUTION_ENV_PATH, and a case template for its top model.
    A repository without an ensemble (a BLS model and the models it calls) gets a one-step ensemble around
    its top model: what SageMaker MME serves. Files no Triton model loads (clients, notebooks) are left
    where they are, and listed. Then validates."""
    parent = _models_parent(workspace, models_dir)
    target = workspace.runtime(runtime)
    progress = reporter(as_json)
    result = adopt_model(
        source,
        parent,
        runtime=target,
        builder=env_builder_for(target, progress),
        name=name,
        top=top,
        report=progress,
    )
    adopted, locked, report = result.adoption, result.locked, result.report
    model = ModelDir(adopted.path)
    if as_json:
        echo_json(
            {
                "adopted": str(adopted.path),
                "name": model.name,
                "triton_models": list(adopted.triton_models),
                "top_model": adopted.top_model,
                "wrapped": adopted.wrapped,
                "loader": adopted.loader,
                "left_out": [str(path) for path in adopted.left_out],
                "requirements": [str(path) for path in adopted.requirements],
                "wired": list(adopted.wired),
                "lock": str(locked.path) if locked else None,
                "case_template": str(adopted.case_template) if adopted.case_template else None,
                "validation": report.to_json(),
            }
        )
        return ExitCode.OK if report.ok else ExitCode.MODEL_ERROR
    shown = display_path(adopted.path)
    top_line = f"top: {adopted.top_model}"
    if adopted.wrapped:
        loads = f", after {adopted.loader}, which loads what it calls by name" if adopted.loader else ""
        top_line += (
            f", an ensemble around {adopted.wrapped}{loads}, written by adopt: SageMaker MME serves a "
            "repository's ensemble, and loads only it and its steps"
        )
    click.echo(f"adopted {source} as {shown}: {', '.join(adopted.triton_models)} ({top_line})")
    if adopted.left_out:
        left = ", ".join(display_path(path) for path in adopted.left_out)
        click.echo(f"  left out (no Triton model loads them): {left}")
    if adopted.wired:
        click.echo(f"  {REQUIREMENTS_FILE} wired into EXECUTION_ENV_PATH of: {', '.join(adopted.wired)}")
    elif not adopted.requirements:
        click.echo(f"  no {REQUIREMENTS_FILE}: python steps run on the server's own Python")
    if locked is not None:
        click.echo(f"  locked {plural(locked.packages, 'package')} into {display_path(locked.path)}")
    _render_report(report)
    if not report.ok:
        click.echo(
            f"validate: {plural(len(report.diagnostics), 'problem')}; fix them, then run packager validate {model.name}",
            err=True,
        )
        return ExitCode.MODEL_ERROR
    if adopted.case_template is None:
        click.echo(
            f"validate: ok. Next: declare {adopted.top_model}'s inputs and outputs in its {TRITON_CONFIG}, write cases under {display_path(model.path / CASES_DIR)}, then packager replay {model.name}"
        )
    else:
        click.echo(
            f"validate: ok. Next: set the inputs and write the expected outputs (null until then) in {display_path(adopted.case_template)}, then packager replay {model.name}"
        )
    return ExitCode.OK


@click.command(name="lock", epilog=EXIT_CODES)
@MODELS_ARGUMENT
@RUNTIME_OPTION
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a lock is missing or would change.")
@JSON_OPTION
@pass_workspace
def lock_command(
    workspace: Workspace, *, models: tuple[str, ...], runtime: str | None, check: bool, as_json: bool
) -> ExitCode:
    """Resolve each model's requirements.txt, with the runtime's constraints, for the runtime's Python and
    platform (not this machine's) into requirements.lock beside it: every package pinned, with hashes.
    Commit both files; environments are built from the lock only."""
    target = workspace.runtime(runtime)
    chosen = [model for model in workspace.models(models) if (model.path / REQUIREMENTS_FILE).is_file()]
    results = [(model, lock_model(model, target, write=not check)) for model in chosen]
    stale = [model.name for model, locked in results if locked.changed]
    if as_json:
        echo_json(
            {
                "runtime": target.name,
                "ok": not (check and stale),
                "locks": [
                    {
                        "model": model.name,
                        "lock": str(locked.path),
                        "packages": locked.packages,
                        "changed": locked.changed,
                    }
                    for model, locked in results
                ],
            }
        )
    else:
        verb = "would change" if check else "updated"
        rows = [
            [
                model.name,
                display_path(locked.path),
                str(locked.packages),
                verb if locked.changed else "up to date",
            ]
            for model, locked in results
        ]
        click.echo(table(rows, ["model", "lock", "packages", "state"]))
        click.echo(f"runtime {target.name}: CPython {target.python}, {target.platform}", err=True)
    return ExitCode.MODEL_ERROR if check and stale else ExitCode.OK


@click.command(name="config", epilog=EXIT_CODES)
@JSON_OPTION
@pass_workspace
def config_command(workspace: Workspace, as_json: bool) -> ExitCode:
    """Show the configuration in effect: packager.toml over the embedded defaults, with the store URIs
    after PACKAGER_STAGING_URI / PACKAGER_PRODUCTION_URI."""
    config = workspace.config
    staging_uri, production_uri = workspace.store_uris()
    public_key = str(config.public_key) if config.public_key else None
    document = {
        "file": str(config.path) if config.path else None,
        "runtime": config.default_runtime,
        "runtime_now": workspace.runtime(None).name,
        "runtimes": {name: asdict(runtime) for name, runtime in sorted(config.runtimes.items())},
        "stores": {
            "staging": staging_uri,
            "production": production_uri,
            "production_branches": list(config.stores.production_branches),
        },
        "signing": {"public_key": public_key},
        "endpoint": {
            "cold_start_budget": config.cold_start.seconds,
            "over_budget": config.cold_start.over_budget,
        },
    }
    if as_json:
        echo_json(document)
        return ExitCode.OK
    click.echo(f"file        {document['file'] or '(none: the embedded defaults)'}")
    click.echo(f"runtime     {config.default_runtime} (now: {document['runtime_now']})")
    click.echo(f"staging     {staging_uri}")
    click.echo(f"production  {production_uri} (branches: {', '.join(config.stores.production_branches)})")
    click.echo(f"public key  {public_key or '(none: signatures not required)'}")
    budget = config.cold_start
    click.echo(f"cold start  within {budget.seconds:g} s on an endpoint (over it: {budget.over_budget})")
    rows = [
        [
            name,
            runtime.triton_version,
            runtime.python,
            runtime.launcher,
            runtime.env_builder,
            "yes" if runtime.network else "no",
            runtime.description,
        ]
        for name, runtime in sorted(config.runtimes.items())
    ]
    headers = ["runtime", "triton", "python", "launcher", "env builder", "network", "description"]
    click.echo("\n" + table(rows, headers))
    return ExitCode.OK
