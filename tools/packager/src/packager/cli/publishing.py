"""Commands that publish: push, ci, and the release manager's releases, promote, rollback."""

from __future__ import annotations

import os
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

import click

from packager.ci import (
    MATRIX_SYSTEMS,
    CiPlan,
    CiRun,
    ci_table,
    failure_details,
    headline,
    markdown,
    run_ci,
    write_ci_junit,
)
from packager.ci import (
    matrix as render_matrix,
)
from packager.cli.options import (
    CPU_OPTION,
    EXIT_CODES,
    JSON_OPTION,
    MODELS_ARGUMENT,
    PRODUCTION_OPTION,
    PUBLIC_KEY_OPTION,
    STAGING_OPTION,
    echo_json,
    load_timeout_option,
    pass_workspace,
    publishing_options,
    reporter,
)
from packager.environments import env_builder_for
from packager.errors import ExitCode, worst
from packager.pipeline import PushPlan, cold_start_check, pants_command, push_model, select_models
from packager.release import Revision, history, promote, released_models, rollback
from packager.replay import replay_table
from packager.settings import Runtime
from packager.tables import table
from packager.triton import LOAD_TIMEOUT, launcher_for
from packager.workspace import Workspace

LOAD_TIMEOUT_OPTION = load_timeout_option(LOAD_TIMEOUT)


@click.command(epilog=EXIT_CODES)
@MODELS_ARGUMENT
@publishing_options
@LOAD_TIMEOUT_OPTION
@CPU_OPTION
@JSON_OPTION
@pass_workspace
def push(
    workspace: Workspace,
    *,
    models: tuple[str, ...],
    branch: str | None,
    commit: str | None,
    runtime: str | None,
    staging: str | None,
    production: str | None,
    out: Path | None,
    sign_key: Path | None,
    public_key: Path | None,
    load_timeout: float,
    cpu: bool,
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
    target = workspace.runtime(runtime, cpu=cpu)
    plan = _push_plan(
        workspace,
        revision,
        target=target,
        staging=staging,
        production=production,
        out=out,
        sign_key=sign_key,
        public_key=public_key,
        load_timeout=load_timeout,
        as_json=as_json,
    )
    with closing(plan.route.store):
        results = [push_model(model, plan) for model in workspace.models(models)]
    if as_json:
        echo_json(
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
    return worst(result.error_code for result in results)


def _push_plan(
    workspace: Workspace,
    revision: Revision,
    *,
    target: Runtime,
    staging: str | None,
    production: str | None,
    out: Path | None,
    sign_key: Path | None,
    public_key: Path | None,
    load_timeout: float,
    as_json: bool,
) -> PushPlan:
    """What `push` and `ci` publish with: the runtime's backends, the branch's route, keys and outputs."""
    report = reporter(as_json)
    launcher = launcher_for(target, report)
    key = workspace.public_key(public_key)
    log_dir = workspace.log_dir()
    check = cold_start_check(
        workspace.config.cold_start,
        launcher,
        log_dir,
        public_key=key,
        load_timeout=load_timeout,
        refused="nothing was published",
        report=report,
    )
    return PushPlan(
        runtime=target,
        builder=env_builder_for(target, report),
        launcher=launcher,
        revision=revision,
        route=workspace.route(revision, staging, production),
        out_dir=out or workspace.dist(),
        log_dir=log_dir,
        repository=workspace.root,
        signing_key=workspace.signing_key(sign_key),
        public_key=key,
        report=report,
        load_timeout=load_timeout,
        check=check,
    )


@click.command(name="ci", epilog=EXIT_CODES)
@MODELS_ARGUMENT
@click.option("--since", help="Compare with this commit (default: see above).")
@click.option("--all", "every", is_flag=True, help="Every model, changed or not.")
@click.option(
    "--matrix",
    type=click.Choice(MATRIX_SYSTEMS),
    help="Only print the models to process as a job matrix: GitHub's strategy.matrix, or a GitLab child pipeline.",
)
@click.option("--remote", help="The DVC remote to pull weights from (default: the repository's default).")
@publishing_options
@click.option(
    "--junit-xml",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the JUnit XML report (default: dist/ci/junit.xml).",
)
@LOAD_TIMEOUT_OPTION
@JSON_OPTION
@pass_workspace
def ci_command(
    workspace: Workspace,
    *,
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
    load_timeout: float,
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
    selection = select_models(
        root,
        known,
        workspace.models(models) if models else [],
        every=every,
        revision=revision,
        production_branches=workspace.config.stores.production_branches,
        since=since,
        pants=pants,
    )
    if matrix is not None:
        click.echo(render_matrix(selection.names, matrix))
        return ExitCode.OK
    run = CiRun(revision, selection.kind, selection.considered, selection.names, selection.base)
    if not as_json:
        click.echo(f"ci: {headline(run)}", err=True)
    if selection.models:
        target = workspace.runtime(runtime)
        push_plan = _push_plan(
            workspace,
            revision,
            target=target,
            staging=staging,
            production=production,
            out=out,
            sign_key=sign_key,
            public_key=public_key,
            load_timeout=load_timeout,
            as_json=as_json,
        )
        with closing(push_plan.route.store):
            gate_runtime = workspace.runtime(None, engine=False)  # what the models' tests resolve
            run_ci(selection.models, CiPlan(root, pants, push_plan, remote, gate_runtime), run)
    write_ci_junit(run, junit_xml or workspace.dist() / "ci" / "junit.xml")
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a") as stream:
            stream.write(markdown(run) + "\n")
    if as_json:
        echo_json(run.to_json())
    elif run.runs:
        click.echo(ci_table(run))
        for title, detail in failure_details(run):
            click.echo(f"\n{title}:\n{detail}")
    else:
        click.echo("nothing affected: nothing to build or publish", err=True)
    return run.exit_code()


@click.command(epilog=EXIT_CODES)
@click.argument("model", required=False)
@PRODUCTION_OPTION
@JSON_OPTION
@pass_workspace
def releases(workspace: Workspace, *, model: str | None, production: str | None, as_json: bool) -> ExitCode:
    """The release history of one model, or of every released model: what was in production, and when,
    and which version is current (the newest entry)."""
    with closing(workspace.production_store(production)) as store:
        names = [model] if model else released_models(store)
        documents = {name: history(store, name) for name in names}
    if model and not documents[model]:
        raise click.UsageError(f"{model} has no releases in {store.uri}")
    if as_json:
        echo_json(
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


@click.command(name="promote", epilog=EXIT_CODES)
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
    *,
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
        promotion = promote(
            source,
            target,
            model=model,
            version=version,
            from_commit=from_commit,
            public_key=key,
            branch=branch,
        )
    entry, source_key = promotion.entry, promotion.source.key
    if as_json:
        echo_json(
            {
                "model": model,
                "version": version,
                "source": promotion.source.uri,
                "destination": promotion.destination.uri,
                "outcome": promotion.outcome,
                "entry": asdict(entry) if entry is not None else None,
            }
        )
    elif entry is None:
        click.echo(f"{model} {version} from {source_key} is already in production and current; nothing to do")
    else:
        click.echo(
            f"promoted {source_key} -> {promotion.destination.uri} (sha256 {entry.sha256[:12]}); {model} is "
            f"now at {version}"
        )
    return ExitCode.OK


@click.command(name="rollback", epilog=EXIT_CODES)
@click.argument("model")
@click.option(
    "--to", "to_version", type=int, help="The version to go back to (default: the one before the current)."
)
@PRODUCTION_OPTION
@PUBLIC_KEY_OPTION
@JSON_OPTION
@pass_workspace
def rollback_command(
    workspace: Workspace,
    *,
    model: str,
    to_version: int | None,
    production: str | None,
    public_key: Path | None,
    as_json: bool,
) -> ExitCode:
    """Move a model's "current" pointer back to an earlier published version, after verifying it as promote
    does (its recorded digest, its manifest, its signature when a public key is configured); the history
    grows by one entry."""
    key = workspace.public_key(public_key)
    with closing(workspace.production_store(production)) as store:
        entry = rollback(store, model, to_version=to_version, public_key=key)
    if as_json:
        echo_json({"model": model, "current": entry.version, "entry": asdict(entry)})
    else:
        click.echo(f"{model} is now at version {entry.version} ({entry.note}); history has the rollback")
    return ExitCode.OK
