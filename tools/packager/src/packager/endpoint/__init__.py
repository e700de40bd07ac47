"""Endpoint: a SageMaker multi-model endpoint (MME), emulated locally on real Triton servers.

Owns the emulator (`emulator`: targets fetched from a store on their first request, verified, staged and
loaded; least-recently-used targets unloaded under a memory limit; ModelNotReadyException past the load
deadline; per-target cold-start timings), the pool of servers that keeps every target's model names as
its artifact gives them (`servers`), staging a target's Triton models into a server (`staging`),
forwarding a request body to Triton (`forward`), the HTTP front that answers boto3's `sagemaker-runtime`
InvokeEndpoint (`front`), the errors as the service answers them (`errors`), memory sizes as people write
them (`sizes`), an artifact's cold start, timed against a budget, and its failure at a step (`cold_start`), and
InvokeEndpoint's limits and what makes a TargetModel a key in the store (`limits`).

Public: measure_cold_start, ColdStartCheck, ColdStartFailed, Emulator, emulating,
Settings, ColdStart, Eviction, Event, Loaded, NOT_READY_AFTER, fronted, Backend, Connections,
TARGET_HEADER, EndpointError, TargetInvalid, RequestInvalid, PayloadTooLarge, UnknownOperation,
ModelNotReady, ModelError, StoreUnavailable, Answer, infer, triton_headers, BINARY_JSON, ServerPool, Slot,
server_pool, stage_models, staged_bytes, parse_size, shown_size, SizeError, MAX_BODY, MAX_TARGET,
check_target.
"""

from packager.endpoint.cold_start import (
    ColdStartCheck,
    ColdStartFailed,
    measure_cold_start,
)
from packager.endpoint.emulator import (
    NOT_READY_AFTER,
    ColdStart,
    Emulator,
    Event,
    Eviction,
    Loaded,
    Settings,
    emulating,
)
from packager.endpoint.errors import (
    EndpointError,
    ModelError,
    ModelNotReady,
    PayloadTooLarge,
    RequestInvalid,
    StoreUnavailable,
    TargetInvalid,
    UnknownOperation,
)
from packager.endpoint.forward import BINARY_JSON, Answer, infer, triton_headers
from packager.endpoint.front import TARGET_HEADER, Backend, Connections, fronted
from packager.endpoint.limits import MAX_BODY, MAX_TARGET, check_target
from packager.endpoint.servers import ServerPool, Slot, server_pool
from packager.endpoint.sizes import SizeError, parse_size, shown_size
from packager.endpoint.staging import stage_models, staged_bytes

__all__ = [
    "ColdStartCheck",
    "ColdStartFailed",
    "measure_cold_start",
    "NOT_READY_AFTER",
    "ColdStart",
    "Emulator",
    "Event",
    "Eviction",
    "Loaded",
    "Settings",
    "emulating",
    "EndpointError",
    "ModelError",
    "ModelNotReady",
    "StoreUnavailable",
    "TargetInvalid",
    "RequestInvalid",
    "PayloadTooLarge",
    "UnknownOperation",
    "BINARY_JSON",
    "Answer",
    "infer",
    "triton_headers",
    "TARGET_HEADER",
    "Backend",
    "Connections",
    "fronted",
    "MAX_BODY",
    "MAX_TARGET",
    "check_target",
    "SizeError",
    "parse_size",
    "shown_size",
    "ServerPool",
    "Slot",
    "server_pool",
    "stage_models",
    "staged_bytes",
]
