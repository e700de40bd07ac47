"""Commands that run Triton: serve, replay, and the container runtime's image."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import click

from packager.artifacts import read_manifest
from packager.cli.options import (
    ARTIFACT_OPTION,
    CPU_OPTION,
    EXIT_CODES,
    JSON_OPTION,
    MODELS_ARGUMENT,
    PUBLIC_KEY_OPTION,
    RUNTIME_OPTION,
    echo_json,
    load_timeout_option,
    pass_workspace,
    reporter,
)
from packager.environments import env_builder_for
from packager.errors import ExitCode, worst
from packager.modeldir import Case, load_cases, top_model
from packager.pipeline import ReplayPlan, replay_built, replay_models
from packager.replay import PROTOCOLS, replay_table, summary, write_junit
from packager.settings import Runtime
from packager.tables import table
from packager.triton import (
    ENV_MODES,
    LOAD_TIMEOUT,
    Example,
    Ports,
    Reload,
    Served,
    Watcher,
    artifact_launched,
    build_image,
    check_image,
    example_for,
    image_for,
    launched,
    launcher_for,
    prepare_to_serve,
)
from packager.workspace import Workspace

ENV_MODE_OPTION = click.option(
    "--env-mode",
    type=click.Choice(ENV_MODES),
    default="unpacked",
    show_default=True,
    help="Serve the environment unpacked from the cache (fast loads) or as the tarball that ships.",
)
LOAD_TIMEOUT_OPTION = load_timeout_option(LOAD_TIMEOUT)


@click.command(epilog=EXIT_CODES)
@click.argument("model", metavar="[MODEL|PATH]", required=False)
@RUNTIME_OPTION
@ENV_MODE_OPTION
@ARTIFACT_OPTION
@PUBLIC_KEY_OPTION
@click.option(
    "--reload",
    "watch",
    is_flag=True,
    help="Watch the model directory (and libs/) and reload what changed on save; a change that does not "
    "validate or load is refused, and the last good version serves on.",
)
@click.option(
    "--http-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Answer HTTP/REST on this 127.0.0.1 port (default: a free one, printed).",
)
@click.option(
    "--grpc-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Answer gRPC on this 127.0.0.1 port (default: a free one, printed).",
)
@LOAD_TIMEOUT_OPTION
@CPU_OPTION
@JSON_OPTION
@pass_workspace
def serve(
    workspace: Workspace,
    *,
    model: str | None,
    runtime: str | None,
    env_mode: str,
    artifact: Path | None,
    public_key: Path | None,
    watch: bool,
    http_port: int | None,
    grpc_port: int | None,
    load_timeout: float,
    cpu: bool,
    as_json: bool,
) -> ExitCode:
    """Serve one model directory, or a built artifact (--artifact), in a local Triton until Ctrl-C,
    printing its endpoints and a curl that sends the top-level model an example request (--json: as one
    JSON document, then a JSON line per reload)."""
    target = workspace.runtime(runtime, cpu=cpu)
    if (model is None) == (artifact is None):
        raise click.UsageError("serve takes one MODEL|PATH or --artifact FILE")
    if watch and artifact is not None:
        raise click.UsageError("--reload watches a model directory; an artifact never changes")
    report = reporter(as_json)
    launcher = launcher_for(target, report)
    ports = Ports(http_port, grpc_port)
    if artifact is not None:
        log_path = workspace.log_dir() / f"{artifact.name}-serve.log"
        key = workspace.public_key(public_key)
        with artifact_launched(
            artifact, launcher, log_path=log_path, public_key=key, load_timeout=load_timeout, ports=ports
        ) as (checked, served):
            return _serve(
                f"{checked.name} {checked.version} ({artifact})",
                target,
                served=served,
                log_path=log_path,
                as_json=as_json,
            )
    found = workspace.models((str(model),))
    if len(found) != 1:
        raise click.UsageError(f"serve takes one model; {model} holds {len(found)}")
    log_path = workspace.log_dir() / f"{found[0].name}-serve.log"
    builder = env_builder_for(target, report)
    validated, environment = prepare_to_serve(
        found[0], target, builder=builder, launcher=launcher, report=report, load_timeout=load_timeout
    )
    cases = load_cases(found[0].path, validated.triton_models, top_model(validated.triton_models))
    with launched(
        validated,
        environment,
        launcher=launcher,
        log_path=log_path,
        env_mode=env_mode,
        load_timeout=load_timeout,
        ports=ports,
    ) as served:
        watcher = Watcher(found[0], served, environment) if watch else None
        return _serve(
            found[0].name,
            target,
            served=served,
            log_path=log_path,
            as_json=as_json,
            watcher=watcher,
            cases=cases,
        )


def _serve(
    what: str,
    runtime: Runtime,
    *,
    served: Served,
    log_path: Path,
    as_json: bool,
    watcher: Watcher | None = None,
    cases: list[Case] | None = None,
) -> ExitCode:
    """Say where the server answers and how to try it (with the top model's first case, if it has one),
    then keep it up until Ctrl-C (or until it dies)."""
    endpoints = served.server.endpoints
    example = example_for(
        endpoints.http,
        endpoints.grpc,
        model=served.top_model,
        triton_models=served.triton_models,
        cases=cases or [],
        bodies=log_path.parent,
    )
    document = {
        "serving": what,
        "runtime": runtime.name,
        "triton_version": runtime.triton_version,
        "http": f"http://{endpoints.http}/v2/models/{served.top_model}",
        "grpc": endpoints.grpc,
        "metrics": f"http://{endpoints.metrics}/metrics",
        "models": sorted(served.triton_models),
        "log": str(log_path),
        "curl": example.curl,
        "python": example.python,
        "decoupled": example.decoupled,
    }
    if as_json:
        echo_json(document)
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
        _echo_example(example)
        click.echo("Ctrl-C stops the server and removes everything it started.")
        if watcher is not None:
            click.echo("Watching for changes; each save reloads what it touched.")
    while served.server.alive():
        time.sleep(0.3)
        changed = watcher.changes() if watcher is not None else []
        if changed and watcher is not None:
            _report_reload(watcher.reload(changed), as_json)
    click.echo(f"Triton exited unexpectedly:\n{served.server.log_excerpt()}", err=True)
    return ExitCode.ENVIRONMENT_ERROR


def _echo_example(example: Example) -> None:
    """How to try the top-level model: a curl, or (a decoupled model that generate_stream cannot carry)
    Python that streams over gRPC."""
    if not example.decoupled:
        click.echo(f"Try {example.model}, the top-level model, with {example.sends}:")
    elif example.curl is not None:
        click.echo(
            f"Try {example.model}, the top-level model (decoupled: it streams), with {example.sends} over "
            "generate_stream, each response an event:"
        )
    else:
        click.echo(
            f"Try {example.model}, the top-level model (decoupled: it streams), with {example.sends} over gRPC "
            f"streaming (generate_stream cannot carry it: {example.why_grpc}), in Python:"
        )
    for line in (example.curl or example.python or "").splitlines():
        click.echo(f"  {line}")


def _report_reload(reload: Reload, as_json: bool) -> None:
    """One reload's outcome: what was reloaded, or why the last good version still serves."""
    if as_json:
        click.echo(json.dumps(reload.to_json()))
    elif reload.reloaded:
        click.echo(f"reloaded {', '.join(reload.reloaded)} in {reload.seconds:.2f} s")
    elif reload.problems:
        click.echo("\n".join(reload.problems))
        click.echo("not reloaded: fix the problems above; the last good version still serves")
    elif reload.refused is not None:
        click.echo(f"{reload.refused}\nnot reloaded: the last good version still serves")
    else:
        click.echo(f"changed {', '.join(reload.changed)}: no Triton model holds it; nothing to reload")


@click.command(epilog=EXIT_CODES)
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
@LOAD_TIMEOUT_OPTION
@CPU_OPTION
@JSON_OPTION
@pass_workspace
def replay(
    workspace: Workspace,
    *,
    models: tuple[str, ...],
    runtime: str | None,
    env_mode: str,
    protocols: tuple[str, ...],
    junit_xml: Path | None,
    artifact: Path | None,
    public_key: Path | None,
    load_timeout: float,
    cpu: bool,
    as_json: bool,
) -> ExitCode:
    """Replay each model's test cases through a real Triton, over HTTP and gRPC, and compare outputs.

    For each model: validate, check weights, build or reuse the environment, start Triton, load every
    Triton model, send every case in tests/cases/, compare within each output's tolerance. With
    --artifact, Triton serves exactly what the artifact holds, packed environments included, once it
    verified against its manifest (and signature, with a public key) as it was unpacked.
    """
    target = workspace.runtime(runtime, cpu=cpu)
    log_dir = workspace.log_dir()
    report = reporter(as_json)
    launcher = launcher_for(target, report)
    if artifact is not None:
        chosen = workspace.models(models or (str(read_manifest(artifact)[0]["model"]),))
        if len(chosen) != 1:
            raise click.UsageError("--artifact replays one model's cases: name that one model")
    plan = ReplayPlan(
        target,
        env_builder_for(target, report),
        launcher,
        log_dir,
        env_mode=env_mode,
        protocols=protocols or PROTOCOLS,
        load_timeout=load_timeout,
        report=report,
    )
    if artifact is not None:
        key = workspace.public_key(public_key)
        replays = [replay_built(artifact, chosen[0], plan, public_key=key)]
    else:
        replays = replay_models(workspace.models(models), plan)
    if junit_xml is not None:
        write_junit(replays, junit_xml, {"runtime": target.name, "launcher": target.launcher})
    if as_json:
        echo_json(
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
    return worst(item.exit_code for item in replays)


@click.group(epilog=EXIT_CODES)
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
    built = build_image(target, reporter(as_json))
    if as_json:
        echo_json(
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
def image_check(workspace: Workspace, *, reference: str | None, runtime: str, as_json: bool) -> ExitCode:
    """Run an image's Triton (default: the runtime's image) and report its Triton version, its stub's
    Python and its backends, compared with the runtime's profile; exit 1 where they differ."""
    target = workspace.runtime(runtime)
    facts = check_image(reference or image_for(target))
    differences = facts.differences(target)
    if as_json:
        echo_json(
            {**asdict(facts), "runtime": target.name, "differences": differences, "ok": not differences}
        )
    else:
        rows = [
            ["Triton", facts.triton_version, target.triton_version],
            ["stub Python", facts.python, target.python],
            ["backends", ", ".join(facts.backends), "python"],
            [
                "socat",
                "yes" if facts.relay else "no",
                "not needed" if target.network else "needed (no network)",
            ],
        ]
        click.echo(table(rows, ["", facts.image, f"runtime {target.name}"]))
        for difference in differences:
            click.echo(f"{facts.image}: {difference}", err=True)
    return ExitCode.MODEL_ERROR if differences else ExitCode.OK
