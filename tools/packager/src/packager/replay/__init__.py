"""Replay: a model's test cases sent through a real Triton over HTTP and gRPC, compared with what they
expect, and reported.

Owns running the cases (`runner`: a model directory, or exactly what a built artifact holds), the clients
per protocol (`clients`), output comparison within tolerances (`compare`), and the reports a person or a
CI system reads: a terminal table and JUnit XML (`reports`).

Public: replay_model, replay_artifact, replay_cases, ModelReplay, CaseResult, NoCases, PROTOCOLS,
compare, compare_stream, replay_table, summary, write_junit; GrpcStream, Streamed, StreamFailed,
grpc_inputs (a decoupled model's requests over a gRPC stream, which the load test and the cold-start check
send too), triton_error.
"""

from packager.replay.clients import (
    PROTOCOLS,
    GrpcStream,
    Streamed,
    StreamFailed,
    grpc_inputs,
    triton_error,
)
from packager.replay.compare import compare, compare_stream
from packager.replay.reports import replay_table, summary, write_junit
from packager.replay.runner import (
    CaseResult,
    ModelReplay,
    NoCases,
    replay_artifact,
    replay_cases,
    replay_model,
)

__all__ = [
    "PROTOCOLS",
    "GrpcStream",
    "Streamed",
    "StreamFailed",
    "grpc_inputs",
    "triton_error",
    "compare",
    "compare_stream",
    "replay_table",
    "summary",
    "write_junit",
    "CaseResult",
    "ModelReplay",
    "NoCases",
    "replay_artifact",
    "replay_cases",
    "replay_model",
]
