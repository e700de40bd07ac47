"""Commands on artifacts: build, verify, and keygen for signing them."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from packager.artifacts import generate_keys
from packager.cli.options import (
    EXIT_CODES,
    JSON_OPTION,
    MODELS_ARGUMENT,
    OUT_OPTION,
    PUBLIC_KEY_OPTION,
    RUNTIME_OPTION,
    SIGN_KEY_OPTION,
    echo_json,
    pass_workspace,
    reporter,
)
from packager.environments import env_builder_for
from packager.errors import ExitCode, worst
from packager.pipeline import BuildPlan, build_models, cold_start_check
from packager.release import verify_target
from packager.tables import table
from packager.triton import launcher_for
from packager.workspace import Workspace


@click.command(epilog=EXIT_CODES)
@MODELS_ARGUMENT
@RUNTIME_OPTION
@OUT_OPTION
@SIGN_KEY_OPTION
@click.option(
    "--cold-start",
    is_flag=True,
    help="Also measure each artifact's cold start on an emulated multi-model endpoint, against "
    "packager.toml's [endpoint] budget (push always does).",
)
@JSON_OPTION
@pass_workspace
def build(
    workspace: Workspace,
    *,
    models: tuple[str, ...],
    runtime: str | None,
    out: Path | None,
    sign_key: Path | None,
    cold_start: bool,
    as_json: bool,
) -> ExitCode:
    """Build <model>_<version>.tar.gz for each model: its Triton models at the archive root, the packed
    environment in every python step, the weights, and a manifest with the sha256 of every file.
    Byte-reproducible: the same sources, weights and environment give the same sha256."""
    target = workspace.runtime(runtime)
    signing_key = workspace.signing_key(sign_key)
    report = reporter(as_json)
    builder = env_builder_for(target, report)
    check = (  # the manifest is checked; a signature is push's and verify's to check
        cold_start_check(
            workspace.config.cold_start, launcher_for(target, report), workspace.log_dir(), report=report
        )
        if cold_start
        else None
    )
    plan = BuildPlan(
        target, builder, out or workspace.dist(), signing_key=signing_key, check=check, report=report
    )
    results = build_models(workspace.models(models), plan)
    if as_json:
        echo_json({"artifacts": [built.to_json() for built in results]})
    else:
        rows = [
            [
                built.model,
                str(built.artifact.version),
                str(built.artifact.path),
                f"{built.size / 1e6:.1f} MB",
                built.artifact.sha256[:12],
                f"{built.seconds:.2f}",
            ]
            for built in results
        ]
        click.echo(table(rows, ["model", "version", "artifact", "size", "sha256", "seconds"]))
        for built in results:
            if built.error is not None:
                click.echo(f"packager: error: {built.error}", err=True)
    return worst(built.error_code for built in results)


@click.command(epilog=EXIT_CODES)
@click.argument("artifact", metavar="URI|FILE")
@PUBLIC_KEY_OPTION
@JSON_OPTION
@pass_workspace
def verify(workspace: Workspace, *, artifact: str, public_key: Path | None, as_json: bool) -> ExitCode:
    """Check an artifact (a file, or s3://bucket/key, file:///path) against its manifest, its recorded
    digest, and its signature when a public key is configured."""
    key = workspace.public_key(public_key)
    result = verify_target(artifact, workspace.root, key)
    if as_json:
        echo_json({**asdict(result), "ok": result.ok, "signature_checked": key is not None})
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


@click.command(epilog=EXIT_CODES)
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
        echo_json({"private_key": str(private_key), "public_key": str(public_key)})
    else:
        click.echo(
            f"wrote {private_key} (keep it secret; PACKAGER_SIGNING_KEY) and {public_key} "
            "(packager.toml [signing] public_key)"
        )
    return ExitCode.OK
