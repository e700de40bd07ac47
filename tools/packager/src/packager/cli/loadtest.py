"""The load-test command: a model's cases as the request mix, at rising concurrency, against a local
Triton, a running one, or a SageMaker endpoint; the knee and the auto-scaling target it suggests."""

from __future__ import annotations

import math
from pathlib import Path

import click

from packager.cli.options import (
    EXIT_CODES,
    JSON_OPTION,
    RUNTIME_OPTION,
    echo_json,
    load_timeout_option,
    pass_workspace,
    reporter,
)
from packager.environments import env_builder_for
from packager.errors import ExitCode
from packager.loadtest import (
    DEFAULT_HEADROOM,
    Level,
    SageMakerEndpoint,
    Target,
    TritonHttp,
    loadtest_table,
    write_reports,
)
from packager.modeldir import Case
from packager.pipeline import LoadPlan, LocalTriton, Remote, load_test, model_cases
from packager.tables import plural
from packager.triton import LOAD_TIMEOUT, launcher_for
from packager.workspace import Workspace

MAX_CONCURRENCY = 256


def _concurrencies(context: click.Context, parameter: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(item) for item in value.split(",") if item.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated whole numbers, e.g. 1,2,4,8") from None
    if not levels or any(level < 1 or level > MAX_CONCURRENCY for level in levels):
        raise click.BadParameter(f"{value!r}: each level must be 1..{MAX_CONCURRENCY}")
    return levels


@click.command(epilog=EXIT_CODES)
@click.argument("model", metavar="MODEL|PATH")
@click.option("--url", metavar="HOST:PORT", help="Load a running Triton's HTTP endpoint (KServe v2) instead.")
@click.option(
    "--endpoint", metavar="NAME", help="Load this SageMaker endpoint (boto3 invoke_endpoint) instead."
)
@click.option(
    "--endpoint-url",
    metavar="URL",
    help="With --endpoint: the sagemaker-runtime API at this URL (an emulator, `packager mme serve`).",
)
@click.option("--target-model", metavar="KEY", help="With --endpoint: a multi-model endpoint's TargetModel.")
@click.option(
    "--concurrency",
    "concurrencies",
    default="1,2,4,8",
    show_default=True,
    callback=_concurrencies,
    metavar="N,N,...",
    help="The concurrency levels: closed-loop workers, each sending requests back to back.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1, max=3600),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long each level is measured (after a warm-up of a quarter of it, at most 2 s).",
)
@click.option(
    "--p99-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=100.0,
    show_default=True,
    metavar="MS",
    help="The latency objective: the knee is the highest-throughput level whose p99 meets it.",
)
@click.option(
    "--headroom",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=DEFAULT_HEADROOM,
    show_default=True,
    help="The share of the knee's throughput the auto-scaling target allows per instance.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where loadtest.json, loadtest.md and loadtest.png go (default: dist/loadtest/<model>/).",
)
@RUNTIME_OPTION
@load_timeout_option(LOAD_TIMEOUT)
@JSON_OPTION
@pass_workspace
def loadtest(
    workspace: Workspace,
    *,
    model: str,
    url: str | None,
    endpoint: str | None,
    endpoint_url: str | None,
    target_model: str | None,
    concurrencies: tuple[int, ...],
    duration: float,
    p99_ms: float,
    headroom: float,
    out: Path | None,
    runtime: str | None,
    load_timeout: float,
    as_json: bool,
) -> ExitCode:
    """Load-test one model with its test cases as the request mix: at each concurrency level, closed-loop
    workers send the cases back to back for --duration seconds; report requests, errors, throughput and
    p50/p95/p99 latency per level, the knee (the highest throughput whose p99 meets --p99-ms), and the
    SageMakerVariantInvocationsPerInstance target it suggests (knee req/s x 60 x --headroom).

    The load goes to a local Triton this command starts (as `replay` does), to a running Triton at --url,
    or to a SageMaker endpoint (--endpoint; --endpoint-url for an emulator, --target-model for a
    multi-model endpoint). A decoupled model streams its responses: it is loaded over gRPC streaming on the
    local Triton, and the times to its first and last responses are both reported. Writes a table here
    (--json: the JSON report), and JSON, Markdown and a PNG plot into --out.
    """
    if url is not None and endpoint is not None:
        raise click.UsageError("give --url or --endpoint, not both")
    if endpoint is None and (endpoint_url is not None or target_model is not None):
        raise click.UsageError("--endpoint-url and --target-model go with --endpoint")
    if runtime is not None and (url is not None or endpoint is not None):
        raise click.UsageError(
            "--runtime picks the local Triton's runtime; --url and --endpoint load a running server"
        )
    found = workspace.models((model,))
    if len(found) != 1:
        raise click.UsageError(f"loadtest takes one model; {model} holds {len(found)}")
    chosen = found[0]
    where: Remote | LocalTriton
    if url is not None:
        where = Remote(TritonHttp(url), _unstreamed(model_cases(chosen), "Triton's HTTP /infer (--url)"))
    elif endpoint is not None:
        sagemaker = SageMakerEndpoint(endpoint, endpoint_url, target_model)
        where = Remote(sagemaker, _unstreamed(model_cases(chosen), "SageMaker's InvokeEndpoint (--endpoint)"))
    else:
        local = workspace.runtime(runtime)
        report = reporter(as_json)
        launcher, builder = launcher_for(local, report), env_builder_for(local, report)
        log_path = workspace.log_dir() / f"{chosen.name}-loadtest.log"
        where = LocalTriton(local, builder, launcher, log_path, load_timeout=load_timeout, report=report)

    def starting(target: Target, requests: int) -> None:
        click.echo(
            f"load-testing {chosen.name} ({target.description}) with {plural(requests, 'case')}: "
            f"concurrency {','.join(map(str, concurrencies))}, {duration:g} s each ...",
            err=True,
        )

    plan = LoadPlan(concurrencies, duration, p99_ms, headroom)
    result = load_test(
        chosen, where, plan, starting=None if as_json else starting, measured=None if as_json else _progress
    )
    directory = out if out is not None else workspace.dist() / "loadtest" / chosen.name
    written = write_reports(result, directory)
    if as_json:
        echo_json({**result.to_json(), "files": {kind: str(path) for kind, path in written.items()}})
    else:
        click.echo(loadtest_table(result))
    for level in result.levels:
        for sample in level.error_samples:
            click.echo(f"concurrency {level.concurrency}: {sample}", err=True)
    click.echo(f"wrote {', '.join(str(path) for path in written.values())}", err=True)
    return ExitCode.OK if all(level.errors == 0 for level in result.levels) else ExitCode.MODEL_ERROR


def _progress(level: Level) -> None:
    p99 = "-" if math.isnan(level.p99_ms) else f"{level.p99_ms:.1f}"
    click.echo(
        f"  concurrency {level.concurrency}: {level.throughput:.1f} req/s, p99 {p99} ms, "
        f"{plural(level.errors, 'error')}",
        err=True,
    )


def _unstreamed(cases: list[Case], through: str) -> list[Case]:
    """`cases`, unless one calls a decoupled model, which answers with a stream `through` cannot carry."""
    streamed = next((case for case in cases if case.stream is not None), None)
    if streamed is not None:
        raise click.UsageError(
            f"{streamed.model} is decoupled: it answers with a stream, which {through} refuses (SageMaker's "
            "multi-model endpoints too); load-test it over gRPC streaming on the local Triton this command "
            "starts (leave out --url and --endpoint)"
        )
    return cases
