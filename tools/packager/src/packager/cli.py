"""The `packager` command line: a thin layer over the library, one command per pipeline step."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import click

from packager import __version__
from packager.artifacts import build_artifact, generate_keys, read_manifest
from packager.ci import (
    MATRIX_SYSTEMS,
    Base,
    CiPlan,
    CiRun,
    affected_models,
    base_for,
    ci_table,
    failure_details,
    headline,
    markdown,
    pants_command,
    run_ci,
    write_ci_junit,
)
from packager.ci import matrix as render_matrix
from packager.environments import env_builder_for, lock_model, place_in_steps
from packager.errors import ExitCode, PackagerError
from packager.modeldir import REQUIREMENTS_FILE, ModelDir, check_weights, display_path, pull, scaffold
from packager.preflight import NotServable, prepare
from packager.release import (
    PushPlan,
    Revision,
    history,
    promote,
    push_model,
    released_models,
    rollback,
    verify_target,
)
from packager.replay import PROTOCOLS, replay_artifact, replay_model, replay_table, summary, write_junit
from packager.tables import plural, table
from packager.settings import Runtime
from packager.triton import (
    ENV_MODES,
    Served,
    artifact_launched,
    build_image,
    check_image,
    image_for,
    launched,
    launcher_for,
)
from packager.validation import validate_models
from packager.workspace import Workspace

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
ENV_MODE_OPTION = click.option(
    "--env-mode",
    type=click.Choice(ENV_MODES),
    default="unpacked",
    show_default=True,
    help="Serve the environment unpacked from the cache (fast loads) or as the tarball that ships.",
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
ARTIFACT_OPTION = click.option(
    "--artifact",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A built artifact, verified against its manifest (and signature) as it is unpacked.",
)


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
    context.obj = Workspace.find(root)


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
        summary_line = f"{plural(len(reports), 'model')} checked: {len(reports) - len(failed)} ok"
        if failed:
            summary_line += f", {len(failed)} with {plural(problems, 'problem')}"
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
    builder = env_builder_for(target)
    rows, records = [], []
    for model in workspace.models(models):
        report, environment = prepare(model, target, builder)
        placed = place_in_steps(environment, report.triton_models) if environment is not None else []
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
@click.argument("model", metavar="[MODEL|PATH]", required=False)
@RUNTIME_OPTION
@ENV_MODE_OPTION
@ARTIFACT_OPTION
@PUBLIC_KEY_OPTION
@JSON_OPTION
@pass_workspace
def serve(
    workspace: Workspace,
    model: str | None,
    runtime: str | None,
    env_mode: str,
    artifact: Path | None,
    public_key: Path | None,
    as_json: bool,
) -> ExitCode:
    """Serve one model directory, or a built artifact (--artifact), in a local Triton until Ctrl-C,
    printing its endpoints (--json: as one JSON document)."""
    target = workspace.runtime(runtime)
    if (model is None) == (artifact is None):
        raise click.UsageError("serve takes one MODEL|PATH or --artifact FILE")
    launcher = launcher_for(target, progress=not as_json)
    if artifact is not None:
        log_path = workspace.log_dir() / f"{artifact.name}-serve.log"
        key = workspace.public_key(public_key)
        with artifact_launched(artifact, launcher, log_path, key) as (checked, served):
            return _serve(f"{checked.name} {checked.version} ({artifact})", target, served, log_path, as_json)
    found = workspace.models((str(model),))
    if len(found) != 1:
        raise click.UsageError(f"serve takes one model; {model} holds {len(found)}")
    log_path = workspace.log_dir() / f"{found[0].name}-serve.log"
    report, environment = prepare(found[0], target, env_builder_for(target), progress=not as_json)
    with launched(report, environment, launcher, log_path, env_mode) as served:
        return _serve(found[0].name, target, served, log_path, as_json)


def _serve(what: str, runtime: Runtime, served: Served, log_path: Path, as_json: bool) -> ExitCode:
    """Say where the server answers, then keep it up until Ctrl-C (or until it dies)."""
    endpoints = served.server.endpoints
    document = {
        "serving": what,
        "runtime": runtime.name,
        "triton_version": runtime.triton_version,
        "http": f"http://{endpoints.http}/v2/models/{served.top_model}",
        "grpc": endpoints.grpc,
        "metrics": f"http://{endpoints.metrics}/metrics",
        "models": sorted(served.triton_models),
        "log": str(log_path),
    }
    if as_json:
        _echo_json(document)
    else:
        click.echo(f"serving {what} (runtime {runtime.name}, Triton {runtime.triton_version})")
        for key, label in (
            ("http", "HTTP"),
            ("grpc", "gRPC"),
            ("metrics", "metrics"),
            ("models", "models"),
            ("log", "log"),
        ):
            value = document[key]
            click.echo(f"  {label:<8} {', '.join(value) if isinstance(value, list) else value}")
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
@ARTIFACT_OPTION
@PUBLIC_KEY_OPTION
@JSON_OPTION
@pass_workspace
def replay(
    workspace: Workspace,
    models: tuple[str, ...],
    runtime: str | None,
    env_mode: str,
    protocols: tuple[str, ...],
    junit_xml: Path | None,
    artifact: Path | None,
    public_key: Path | None,
    as_json: bool,
) -> ExitCode:
    """Replay each model's test cases through a real Triton, over HTTP and gRPC, and compare outputs.

    For each model: validate, check weights, build or reuse the environment, start Triton, load every
    Triton model, send every case in tests/cases/, compare within each output's tolerance. With
    --artifact, Triton serves exactly what the artifact holds, packed environments included, once it
    verified against its manifest (and signature, with a public key) as it was unpacked.
    """
    target = workspace.runtime(runtime)
    log_dir = workspace.log_dir()
    launcher = launcher_for(target, progress=not as_json)
    replays = []
    if artifact is not None:
        chosen = workspace.models(models or (str(read_manifest(artifact)[0]["model"]),))
        if len(chosen) != 1:
            raise click.UsageError("--artifact replays one model's cases: name that one model")
        if not as_json:
            click.echo(f"replaying {artifact} with the cases of {chosen[0].name} ...", err=True)
        log = log_dir / f"{chosen[0].name}-artifact.log"
        key = workspace.public_key(public_key)
        replays.append(replay_artifact(artifact, chosen[0], launcher, log, protocols or PROTOCOLS, key))
    builder = env_builder_for(target)
    for model in workspace.models(models) if artifact is None else []:
        if not as_json:
            click.echo(f"replaying {model.name} on runtime {target.name} ...", err=True)
        log = log_dir / f"{model.name}-replay.log"
        replays.append(
            replay_model(model, target, builder, launcher, log, env_mode, protocols or PROTOCOLS, not as_json)
        )
    if junit_xml is not None:
        write_junit(replays, junit_xml, {"runtime": target.name, "launcher": target.launcher})
    if as_json:
        _echo_json(
            {
                "runtime": target.name,
                "launcher": target.launcher,
                "passed": all(item.passed for item in replays),
                "models": [item.to_json() for item in replays],
            }
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
@JSON_OPTION
@pass_workspace
def pull_weights(
    workspace: Workspace, models: tuple[str, ...], remote: str | None, as_json: bool
) -> ExitCode:
    """Fetch the DVC-tracked weights of these models only (`dvc pull` of their pointers), then check them."""
    chosen = workspace.models(models)
    pull(chosen, remote)
    problems = [problem for model in chosen for problem in check_weights(model)]
    if as_json:
        _echo_json(
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


@cli.command(epilog=EXIT_CODES)
@click.argument("name")
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create it (default: <root>/models).",
)
@RUNTIME_OPTION
@JSON_OPTION
@pass_workspace
def new(
    workspace: Workspace, name: str, models_dir: Path | None, runtime: str | None, as_json: bool
) -> ExitCode:
    """Create a model directory that passes validate and replay as it is: python pre- and post-processing
    steps wired by an ensemble, a requirements.txt and its lock, test cases and a BUILD file."""
    parent = models_dir or (workspace.root / "models" if workspace.root else None)
    if parent is None:
        raise click.UsageError("not inside a model monorepo: give --models-dir")
    created = scaffold(parent, name)
    locked = lock_model(ModelDir(created), workspace.runtime(runtime))
    if as_json:
        _echo_json({"created": str(created), "name": name, "lock": str(locked.path)})
    else:
        click.echo(f"created {created}; next: packager validate {name} && packager replay {name}")
    return ExitCode.OK


@cli.command(name="lock", epilog=EXIT_CODES)
@MODELS_ARGUMENT
@RUNTIME_OPTION
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a lock is missing or would change.")
@JSON_OPTION
@pass_workspace
def lock_command(
    workspace: Workspace, models: tuple[str, ...], runtime: str | None, check: bool, as_json: bool
) -> ExitCode:
    """Resolve each model's requirements.txt, with the runtime's constraints, for the runtime's Python and
    platform (not this machine's) into requirements.lock beside it: every package pinned, with hashes.
    Commit both files; environments are built from the lock only."""
    target = workspace.runtime(runtime)
    chosen = [model for model in workspace.models(models) if (model.path / REQUIREMENTS_FILE).is_file()]
    results = [(model, lock_model(model, target, write=not check)) for model in chosen]
    stale = [model.name for model, locked in results if locked.changed]
    if as_json:
        _echo_json(
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


@cli.command(epilog=EXIT_CODES)
@MODELS_ARGUMENT
@RUNTIME_OPTION
@OUT_OPTION
@SIGN_KEY_OPTION
@JSON_OPTION
@pass_workspace
def build(
    workspace: Workspace,
    models: tuple[str, ...],
    runtime: str | None,
    out: Path | None,
    sign_key: Path | None,
    as_json: bool,
) -> ExitCode:
    """Build <model>_<version>.tar.gz for each model: its Triton models at the archive root, the packed
    environment in every python step, the weights, and a manifest with the sha256 of every file.
    Byte-reproducible: the same sources, weights and environment give the same sha256."""
    target = workspace.runtime(runtime)
    builder = env_builder_for(target)
    rows, records = [], []
    for model in workspace.models(models):
        started = time.monotonic()
        report, environment = prepare(model, target, builder)
        artifact = build_artifact(report, target, environment, out or workspace.dist(), sign_key)
        seconds = time.monotonic() - started
        size = artifact.path.stat().st_size
        rows.append(
            [
                model.name,
                str(artifact.version),
                str(artifact.path),
                f"{size / 1e6:.1f} MB",
                artifact.sha256[:12],
                f"{seconds:.2f}",
            ]
        )
        records.append(
            {
                "model": model.name,
                "version": artifact.version,
                "path": str(artifact.path),
                "bytes": size,
                "sha256": artifact.sha256,
            }
        )
    if as_json:
        _echo_json({"artifacts": records})
    else:
        click.echo(table(rows, ["model", "version", "artifact", "size", "sha256", "seconds"]))
    return ExitCode.OK


@cli.command(epilog=EXIT_CODES)
@MODELS_ARGUMENT
@BRANCH_OPTION
@COMMIT_OPTION
@RUNTIME_OPTION
@STAGING_OPTION
@PRODUCTION_OPTION
@OUT_OPTION
@SIGN_KEY_OPTION
@PUBLIC_KEY_OPTION
@JSON_OPTION
@pass_workspace
def push(
    workspace: Workspace,
    models: tuple[str, ...],
    branch: str | None,
    commit: str | None,
    runtime: str | None,
    staging: str | None,
    production: str | None,
    out: Path | None,
    sign_key: Path | None,
    public_key: Path | None,
    as_json: bool,
) -> ExitCode:
    """Validate, build the environment, build the artifact, replay the built artifact through Triton, and
    publish it: production branches (packager.toml, default main) to <production>/<model>_<version>.tar.gz,
    any other branch to <staging>/<branch>/<commit12>/<model>_<version>.tar.gz (uncommitted sources to
    <commit12>-dirty-<content12>/, which can never be promoted).

    Only an artifact whose replay passed in this run is published. Production takes committed sources on
    the production branch only, signed when a public key is configured. A published key never changes:
    the same bytes again are a no-op, other bytes are refused (bump model_version.txt).
    """
    revision = workspace.revision(branch, commit)
    target = workspace.runtime(runtime)
    plan = _push_plan(workspace, revision, target, staging, production, out, sign_key, public_key, as_json)
    with closing(plan.route.store):
        results = [push_model(model, plan) for model in workspace.models(models)]
    if as_json:
        _echo_json(
            {
                "branch": revision.branch,
                "commit": revision.commit,
                "runtime": target.name,
                "ok": all(r.ok for r in results),
                "models": [r.to_json() for r in results],
            }
        )
    else:
        rows = []
        for result in results:
            outcome = result.published.outcome if result.published else "NOT PUBLISHED"
            where = result.published.destination.uri if result.published else (result.error or "")
            version = str(result.artifact.version) if result.artifact else "-"
            cases = result.replay.results if result.replay else []
            replayed = f"{sum(case.passed for case in cases)}/{len(cases)} passed" if result.replay else "-"
            rows.append([result.model, version, replayed, outcome, where])
        click.echo(table(rows, ["model", "version", "replay", "outcome", "where"]))
        click.echo(f"replayed on runtime {target.name} ({target.launcher} launcher)", err=True)
        for result in results:
            if result.replay is not None and not result.replay.passed:
                click.echo("\n" + replay_table([result.replay]))
    codes = [result.error_code for result in results if not result.ok]
    if ExitCode.ENVIRONMENT_ERROR in codes:
        return ExitCode.ENVIRONMENT_ERROR
    return ExitCode.MODEL_ERROR if codes else ExitCode.OK


def _push_plan(
    workspace: Workspace,
    revision: Revision,
    target: Runtime,
    staging: str | None,
    production: str | None,
    out: Path | None,
    sign_key: Path | None,
    public_key: Path | None,
    as_json: bool,
) -> PushPlan:
    """What `push` and `ci` publish with: the runtime's backends, the branch's route, keys and outputs."""
    return PushPlan(
        runtime=target,
        builder=env_builder_for(target),
        launcher=launcher_for(target, progress=not as_json),
        revision=revision,
        route=workspace.route(revision, staging, production),
        out_dir=out or workspace.dist(),
        log_dir=workspace.log_dir(),
        repository=workspace.root,
        signing_key=sign_key,
        public_key=workspace.public_key(public_key),
        progress=not as_json,
    )


@cli.command(name="ci", epilog=EXIT_CODES)
@MODELS_ARGUMENT
@click.option("--since", help="Compare with this commit (default: see above).")
@click.option("--all", "every", is_flag=True, help="Every model, changed or not.")
@click.option(
    "--matrix",
    type=click.Choice(MATRIX_SYSTEMS),
    help="Only print the models to process as a job matrix: GitHub's strategy.matrix, or a GitLab child pipeline.",
)
@BRANCH_OPTION
@COMMIT_OPTION
@click.option("--remote", help="The DVC remote to pull weights from (default: the repository's default).")
@RUNTIME_OPTION
@STAGING_OPTION
@PRODUCTION_OPTION
@OUT_OPTION
@SIGN_KEY_OPTION
@PUBLIC_KEY_OPTION
@click.option(
    "--junit-xml",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the JUnit XML report (default: dist/ci/junit.xml).",
)
@JSON_OPTION
@pass_workspace
def ci_command(
    workspace: Workspace,
    models: tuple[str, ...],
    since: str | None,
    every: bool,
    matrix: str | None,
    branch: str | None,
    commit: str | None,
    remote: str | None,
    runtime: str | None,
    staging: str | None,
    production: str | None,
    out: Path | None,
    sign_key: Path | None,
    public_key: Path | None,
    junit_xml: Path | None,
    as_json: bool,
) -> ExitCode:
    """The pipeline on a push, for the models it affects only: for each, pull its weights, run the quality
    gate on its targets (`pants lint check test models/<name>::`), then push it (environment, build, replay
    of the built artifact, publish by branch as `packager push` does). One model's failure never stops the
    others; a model that failed any step publishes nothing.

    Affected models come from the Pants graph: targets changed since a base commit, and their dependents.
    The base is --since; else, on a branch that does not publish to production, where it left the
    production branch; else the CI system's previous tip (GitHub's push event, GitLab's
    CI_COMMIT_BEFORE_SHA); else the commit's parent. MODEL arguments or --all skip the comparison.

    Prints progress and a table; appends Markdown to $GITHUB_STEP_SUMMARY when it is set; writes JUnit XML.
    """
    if since is not None and (models or every):
        raise click.UsageError(
            "--since selects the affected models; it does not go with --all or MODEL arguments"
        )
    revision = workspace.revision(branch, commit)
    root = workspace.require_root("packager ci")
    known = workspace.models(())
    pants = pants_command(root)
    base: Base | None = None
    if models or every:
        chosen = workspace.models(models) if models else known
    else:
        base = base_for(root, revision, workspace.config.stores.production_branches, since)
        chosen = affected_models(root, known, base, pants)
    selection = "named" if models else "--all" if every else "affected"
    if matrix is not None:
        click.echo(render_matrix([model.name for model in chosen], matrix))
        return ExitCode.OK
    run = CiRun(revision, selection, len(known), [model.name for model in chosen], base)
    if not as_json:
        click.echo(f"ci: {headline(run)}", err=True)
    if chosen:
        target = workspace.runtime(runtime)
        push_plan = _push_plan(
            workspace, revision, target, staging, production, out, sign_key, public_key, as_json
        )
        with closing(push_plan.route.store):
            run_ci(chosen, CiPlan(root, pants, push_plan, remote), run)
    write_ci_junit(run, junit_xml or workspace.dist() / "ci" / "junit.xml")
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a") as stream:
            stream.write(markdown(run) + "\n")
    if as_json:
        _echo_json(run.to_json())
    elif run.runs:
        click.echo(ci_table(run))
        for title, detail in failure_details(run):
            click.echo(f"\n{title}:\n{detail}")
    else:
        click.echo("nothing affected: nothing to build or publish", err=True)
    return run.exit_code()


@cli.command(epilog=EXIT_CODES)
@click.argument("model", required=False)
@PRODUCTION_OPTION
@JSON_OPTION
@pass_workspace
def releases(workspace: Workspace, model: str | None, production: str | None, as_json: bool) -> ExitCode:
    """The release history of one model, or of every released model: what was in production, and when,
    and which version is current (the newest entry)."""
    with closing(workspace.production_store(production)) as store:
        names = [model] if model else released_models(store)
        documents = {name: history(store, name) for name in names}
    if model and not documents[model]:
        raise click.UsageError(f"{model} has no releases in {store.uri}")
    if as_json:
        _echo_json(
            {
                name: {"current": entries[-1].version, "entries": [asdict(entry) for entry in entries]}
                for name, entries in documents.items()
            }
        )
        return ExitCode.OK
    rows = []
    for name, entries in documents.items():
        for index, entry in enumerate(entries):
            marker = "*" if index == len(entries) - 1 else ""
            rows.append(
                [
                    name,
                    f"{entry.version}{marker}",
                    entry.action,
                    entry.sha256[:12],
                    entry.commit[:12],
                    entry.time,
                    entry.actor,
                    entry.pipeline,
                    entry.note,
                ]
            )
    click.echo(
        table(rows, ["model", "version", "action", "sha256", "commit", "time", "actor", "pipeline", "note"])
    )
    click.echo("* current", err=True)
    return ExitCode.OK


@cli.command(name="promote", epilog=EXIT_CODES)
@click.argument("model")
@click.argument("version", type=int)
@click.option(
    "--from-commit",
    required=True,
    help="The commit whose staged (tested) artifact to promote: a full hash or a unique prefix of 7+ digits.",
)
@click.option("--branch", help="The branch that staged it, when several did.")
@STAGING_OPTION
@PRODUCTION_OPTION
@PUBLIC_KEY_OPTION
@JSON_OPTION
@pass_workspace
def promote_command(
    workspace: Workspace,
    model: str,
    version: int,
    from_commit: str,
    branch: str | None,
    staging: str | None,
    production: str | None,
    public_key: Path | None,
    as_json: bool,
) -> ExitCode:
    """Copy the exact staged artifact of a commit into production (server-side; no rebuild), after checking
    its digest and manifest (and signature, when a public key is configured), and make it current.
    Artifacts built from uncommitted sources are never promoted."""
    staging_uri, production_uri = workspace.store_uris(staging, production)
    key = workspace.public_key(public_key)
    with closing(workspace.store(staging_uri)) as source, closing(workspace.store(production_uri)) as target:
        entry, source_key = promote(source, target, model, version, from_commit, key, branch)
    destination = f"{production_uri.rstrip('/')}/{model}_{version}.tar.gz"
    if as_json:
        _echo_json(
            {
                "model": model,
                "version": version,
                "source": f"{staging_uri.rstrip('/')}/{source_key}",
                "destination": destination,
                "outcome": "promoted" if entry is not None else "already current",
                "entry": asdict(entry) if entry is not None else None,
            }
        )
    elif entry is None:
        click.echo(f"{model} {version} from {source_key} is already in production and current; nothing to do")
    else:
        click.echo(
            f"promoted {source_key} -> {destination} (sha256 {entry.sha256[:12]}); {model} is now at {version}"
        )
    return ExitCode.OK


@cli.command(name="rollback", epilog=EXIT_CODES)
@click.argument("model")
@click.option(
    "--to", "to_version", type=int, help="The version to go back to (default: the one before the current)."
)
@PRODUCTION_OPTION
@JSON_OPTION
@pass_workspace
def rollback_command(
    workspace: Workspace, model: str, to_version: int | None, production: str | None, as_json: bool
) -> ExitCode:
    """Move a model's "current" pointer back to an earlier published version; the history grows by one entry."""
    with closing(workspace.production_store(production)) as store:
        entry = rollback(store, model, to_version)
    if as_json:
        _echo_json({"model": model, "current": entry.version, "entry": asdict(entry)})
    else:
        click.echo(f"{model} is now at version {entry.version} ({entry.note}); history has the rollback")
    return ExitCode.OK


@cli.command(epilog=EXIT_CODES)
@click.argument("artifact", metavar="URI|FILE")
@PUBLIC_KEY_OPTION
@JSON_OPTION
@pass_workspace
def verify(workspace: Workspace, artifact: str, public_key: Path | None, as_json: bool) -> ExitCode:
    """Check an artifact (a file, or s3://bucket/key, file:///path) against its manifest, its recorded
    digest, and its signature when a public key is configured."""
    key = workspace.public_key(public_key)
    result = verify_target(artifact, workspace.root, key)
    if as_json:
        _echo_json({**asdict(result), "ok": result.ok, "signature_checked": key is not None})
    elif not result.ok:
        for problem in result.problems:
            click.echo(f"{artifact}: {problem}")
        click.echo(f"{artifact}: does NOT verify", err=True)
    else:
        signed = "signature verified" if key else "signature not checked (no public key)"
        click.echo(
            f"{artifact}: ok: {result.model} {result.version}, sha256 {result.sha256}, "
            f"{result.files} files match the manifest, {signed}"
        )
    return ExitCode.OK if result.ok else ExitCode.MODEL_ERROR


@cli.command(epilog=EXIT_CODES)
@click.option(
    "--private",
    "private_key",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the private key (mode 0600).",
)
@click.option(
    "--public",
    "public_key",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the public key.",
)
@JSON_OPTION
def keygen(private_key: Path, public_key: Path, as_json: bool) -> ExitCode:
    """Create an Ed25519 key pair for signing artifact manifests (never overwrites a key)."""
    generate_keys(private_key, public_key)
    if as_json:
        _echo_json({"private_key": str(private_key), "public_key": str(public_key)})
    else:
        click.echo(
            f"wrote {private_key} (keep it secret; PACKAGER_SIGNING_KEY) and {public_key} "
            "(packager.toml [signing] public_key)"
        )
    return ExitCode.OK


@cli.command(name="config", epilog=EXIT_CODES)
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
    }
    if as_json:
        _echo_json(document)
        return ExitCode.OK
    click.echo(f"file        {document['file'] or '(none: the embedded defaults)'}")
    click.echo(f"runtime     {config.default_runtime} (now: {document['runtime_now']})")
    click.echo(f"staging     {staging_uri}")
    click.echo(f"production  {production_uri} (branches: {', '.join(config.stores.production_branches)})")
    click.echo(f"public key  {public_key or '(none: signatures not required)'}")
    rows = [
        [
            name,
            runtime.triton_version,
            runtime.python,
            runtime.launcher,
            runtime.env_builder,
            runtime.description,
        ]
        for name, runtime in sorted(config.runtimes.items())
    ]
    click.echo("\n" + table(rows, ["runtime", "triton", "python", "launcher", "env builder", "description"]))
    return ExitCode.OK


@cli.group(epilog=EXIT_CODES)
def image() -> None:
    """The Triton image a container runtime serves with: build it here (no registry), or check one."""


@image.command(name="build", epilog=EXIT_CODES)
@click.option("--runtime", default="container", show_default=True, help="The container runtime to build for.")
@JSON_OPTION
@pass_workspace
def image_build(workspace: Workspace, runtime: str, as_json: bool) -> ExitCode:
    """Build the runtime's Triton image from a Debian rootfs (debootstrap, made once) and a local wheelhouse
    of its server_package, tagged by content: building an unchanged image does nothing."""
    target = workspace.runtime(runtime)
    built = build_image(target, progress=not as_json)
    if as_json:
        _echo_json(
            {
                "runtime": target.name,
                "image": built.tag,
                "built": built.built,
                "seconds": round(built.seconds, 1),
            }
        )
    else:
        state = "built" if built.built else "already here"
        click.echo(f"{built.tag}: {state} ({built.seconds:.1f} s); runtime {target.name} serves with it")
    return ExitCode.OK


@image.command(name="check", epilog=EXIT_CODES)
@click.argument("reference", metavar="[IMAGE]", required=False)
@click.option(
    "--runtime", default="container", show_default=True, help="The runtime profile to compare with."
)
@JSON_OPTION
@pass_workspace
def image_check(workspace: Workspace, reference: str | None, runtime: str, as_json: bool) -> ExitCode:
    """Run an image's Triton (default: the runtime's image) and report its Triton version, its stub's
    Python and its backends, compared with the runtime's profile; exit 1 where they differ."""
    target = workspace.runtime(runtime)
    facts = check_image(reference or image_for(target))
    differences = facts.differences(target)
    if as_json:
        _echo_json(
            {**asdict(facts), "runtime": target.name, "differences": differences, "ok": not differences}
        )
    else:
        rows = [
            ["Triton", facts.triton_version, target.triton_version],
            ["stub Python", facts.python, target.python],
            ["backends", ", ".join(facts.backends), "python"],
        ]
        click.echo(table(rows, ["", facts.image, f"runtime {target.name}"]))
        for difference in differences:
            click.echo(f"{facts.image}: {difference}", err=True)
    return ExitCode.MODEL_ERROR if differences else ExitCode.OK


def _echo_json(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=2))


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
