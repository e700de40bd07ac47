"""Load testing: a model's test cases as the request mix, sent by closed-loop workers at rising
concurrency to a Triton (KServe v2 HTTP; gRPC streams for a decoupled model) or a SageMaker endpoint, and what the latencies say.

Owns a case's request bytes (`requests`: Triton v2 JSON, binary tensors where a BYTES input is not text),
the load loop and its targets (`generator`), percentiles, the knee and the auto-scaling target
(`analysis`), and the reports: terminal table, JSON, Markdown and a PNG plot (`reports`).

Public: RequestBody, request_body, Target, TritonHttp, TritonGrpcStream, SageMakerEndpoint, run_level, run_levels,
warmup_for, Level, percentile, summarize, knee, recommended_target, DEFAULT_HEADROOM, LoadReport,
loadtest_table, loadtest_markdown, plot_latency, write_reports.
"""

from packager.loadtest.analysis import (
    DEFAULT_HEADROOM,
    Level,
    knee,
    percentile,
    recommended_target,
    summarize,
)
from packager.loadtest.generator import (
    SageMakerEndpoint,
    Target,
    TritonGrpcStream,
    TritonHttp,
    run_level,
    run_levels,
    warmup_for,
)
from packager.loadtest.reports import (
    LoadReport,
    loadtest_markdown,
    loadtest_table,
    plot_latency,
    write_reports,
)
from packager.loadtest.requests import RequestBody, request_body

__all__ = [
    "RequestBody",
    "request_body",
    "Target",
    "TritonHttp",
    "TritonGrpcStream",
    "SageMakerEndpoint",
    "run_level",
    "run_levels",
    "warmup_for",
    "Level",
    "percentile",
    "summarize",
    "knee",
    "recommended_target",
    "DEFAULT_HEADROOM",
    "LoadReport",
    "loadtest_table",
    "loadtest_markdown",
    "plot_latency",
    "write_reports",
]
