"""`packager mme`: a SageMaker multi-model endpoint emulated on local Triton servers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import click

from packager.cli.options import (
    EXIT_CODES,
    JSON_OPTION,
    PUBLIC_KEY_OPTION,
    RUNTIME_OPTION,
    pass_workspace,
    reporter,
)
from packager.endpoint import TARGET_HEADER, Event, Settings, emulating, fronted, parse_size, shown_size
from packager.errors import ExitCode
from packager.triton import launcher_for
from packager.workspace import Workspace

ENDPOINT_NAME = "local-mme"


@click.group(epilog=EXIT_CODES)
def mme() -> None:
    """A SageMaker multi-model endpoint, emulated on a local Triton."""


@mme.command(epilog=EXIT_CODES)
@click.option(
    "--store",
    "store_uri",
    required=True,
    metavar="URI",
    help="Where the <model>_<version>.tar.gz artifacts are (s3://bucket/prefix, file:///dir, file:dir): "
    "TargetModel is a key under it.",
)
@RUNTIME_OPTION
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Answer on this 127.0.0.1 port (default: a free one, printed).",
)
@click.option(
    "--memory-limit",
    metavar="SIZE",
    help="Unload least-recently-used targets before a load would pass this (512MiB, 2GB; default: none).",
)
@PUBLIC_KEY_OPTION
@JSON_OPTION
@pass_workspace
def serve(
    workspace: Workspace,
    *,
    store_uri: str,
    runtime: str | None,
    port: int | None,
    memory_limit: str | None,
    public_key: Path | None,
    as_json: bool,
) -> ExitCode:
    """Serve the artifacts under --store as a multi-model endpoint until Ctrl-C: each target is downloaded,
    verified and loaded on its first request, and a line (--json: a JSON line) says what each cold start and
    eviction cost."""
    limit = parse_size(memory_limit) if memory_limit is not None else None
    target = workspace.runtime(runtime)
    key = workspace.public_key(public_key)
    store = workspace.store(store_uri)
    log_path = workspace.log_dir() / "mme-serve.log"
    try:
        with emulating(
            store,
            launcher_for(target, reporter(as_json)),
            log_path=log_path,
            settings=Settings(public_key=key, memory_limit=limit),
            listener=_reporter(as_json),
        ) as emulator:
            with fronted(emulator, port) as url:
                _banner(url, store_uri, runtime=target.name, limit=limit, log_path=log_path, as_json=as_json)
                while (exited := emulator.servers.exited()) is None:
                    time.sleep(0.3)
                click.echo(f"Triton exited unexpectedly:\n{exited.log_excerpt()}", err=True)
                return ExitCode.ENVIRONMENT_ERROR
    finally:
        store.close()


def _reporter(as_json: bool) -> Callable[[Event], None]:
    """Print each cold start and eviction as a line (--json: a JSON line)."""

    def report(event: Event) -> None:
        click.echo(json.dumps(event.to_json()) if as_json else event.line())

    return report


def _banner(
    url: str, store_uri: str, *, runtime: str, limit: int | None, log_path: Path, as_json: bool
) -> None:
    """Where the endpoint answers, and a boto3 snippet to call it with."""
    snippet = (
        "import boto3\n"
        f'client = boto3.client("sagemaker-runtime", endpoint_url="{url}", region_name="us-east-1",\n'
        '                      aws_access_key_id="local", aws_secret_access_key="local")\n'
        f'response = client.invoke_endpoint(EndpointName="{ENDPOINT_NAME}", TargetModel="churn_1.tar.gz",\n'
        '                                  ContentType="application/json", Body=request_json)\n'
        'print(response["Body"].read())'
    )
    if as_json:
        document = {
            "event": "serving",
            "endpoint_url": url,
            "endpoint_name": ENDPOINT_NAME,
            "store": store_uri,
            "runtime": runtime,
            "memory_limit": limit,
            "log": str(log_path),
            "target_header": TARGET_HEADER,
        }
        click.echo(json.dumps(document))
        return
    click.echo(f"multi-model endpoint on {store_uri} (runtime {runtime})")
    click.echo(f"  endpoint_url  {url}  (any EndpointName; TargetModel: a key under the store)")
    click.echo(f"  invocations   {url}/endpoints/{ENDPOINT_NAME}/invocations")
    click.echo(f"  memory limit  {shown_size(limit) if limit is not None else 'none'}")
    click.echo(f"  log           {log_path}")
    click.echo("Call it with boto3:")
    for line in snippet.splitlines():
        click.echo(f"  {line}")
    click.echo("Ctrl-C stops it and removes everything it started.")
