"""Forwarding an InvokeEndpoint body to Triton's HTTP inference API, as SageMaker's Triton containers do.

Two bodies are accepted, as SageMaker's Triton containers accept them: a KServe v2 JSON inference request
(any other content type), and `application/vnd.sagemaker-triton.binary+json;json-header-size=N`, the JSON
header followed by binary tensor data, forwarded with Triton's `Inference-Header-Content-Length: N`. A
binary response comes back under the same content type, with its own header size.

A decoupled model (a stream of responses) cannot be invoked so: InvokeEndpoint has no streaming form for a
multi-model endpoint (InvokeEndpointWithResponseStream takes no TargetModel), and SageMaker's Triton front
(`SageMakerMMEHandleInfer`) refuses it with 400 "HTTP end point doesn't support models with decoupled
transaction policy", where Triton's own /infer answers 501: the status is mapped as the front answers it.
Only the cold-start check sends such a model its first request, over gRPC streaming (`stream_infer`).
"""

from __future__ import annotations

import http.client
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from packager.endpoint.errors import ModelError
from packager.modeldir import Tensor
from packager.replay import GrpcStream, StreamFailed, triton_error

BINARY_JSON = "application/vnd.sagemaker-triton.binary+json"
HEADER_SIZE = re.compile(r";\s*json-header-size=([0-9]+)")
TRITON_HEADER_SIZE = "Inference-Header-Content-Length"
INFER_TIMEOUT = 60.0  # SageMaker's limit on a model's answer
# Triton's /infer status -> what SageMaker's MME front answers instead (it never answers 501; an
# unsupported request, such as one to a decoupled model, is a 400 there).
FRONT_STATUS = {501: 400}


@dataclass(frozen=True)
class Answer:
    """What Triton answered a request with, in InvokeEndpoint's terms."""

    body: bytes
    content_type: str


def triton_headers(content_type: str | None) -> dict[str, str]:
    """The headers Triton reads a body by: its binary header size where the content type gives one."""
    if content_type and content_type.split(";")[0].strip() == BINARY_JSON:
        size = HEADER_SIZE.search(content_type)
        if size is None:
            raise ModelError(
                f"{BINARY_JSON} needs ;json-header-size=N", 400, "the content type gives no json-header-size"
            )
        return {"Content-Type": "application/octet-stream", TRITON_HEADER_SIZE: size.group(1)}
    return {"Content-Type": "application/json"}


def infer(address: str, model: str, *, body: bytes, content_type: str | None) -> Answer:
    """Send `body` to `model`'s /infer on the server at `address`; ModelError with Triton's status and
    message when it refuses it."""
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=INFER_TIMEOUT)
    try:
        connection.request(
            "POST",
            f"/v2/models/{urllib.parse.quote(model, safe='')}/infer",
            body=body,
            headers=triton_headers(content_type),
        )
        response = connection.getresponse()
        data = response.read()
        header_size = response.getheader(TRITON_HEADER_SIZE)
    except (OSError, http.client.HTTPException) as error:
        raise ModelError(f"the model did not answer: {error}", 500, str(error)) from None
    finally:
        connection.close()
    if response.status != 200:
        message = triton_error(data)
        status = FRONT_STATUS.get(response.status, response.status)
        kind = "client" if status < 500 else "server"
        raise ModelError(
            f"Received {kind} error ({status}) from the model with message {message!r}", status, message
        )
    if header_size is not None:
        return Answer(data, f"{BINARY_JSON};json-header-size={header_size}")
    return Answer(data, "application/json")


def stream_infer(address: str, model: str, inputs: Sequence[Tensor]) -> Answer:
    """Send `inputs` to a decoupled `model` over gRPC streaming at `address` and wait for its final flag;
    ModelError (as a 500) when the stream fails. The answer carries nothing: only the cold-start check
    sends a request so, to time it."""
    client = grpcclient.InferenceServerClient(address)
    try:
        stream = GrpcStream(client)
        try:
            stream.request(model, inputs, INFER_TIMEOUT)
        finally:
            stream.close()
    except (StreamFailed, InferenceServerException) as error:
        message = error.message() if isinstance(error, InferenceServerException) else str(error)
        raise ModelError(f"the model's gRPC stream failed: {message}", 500, message) from None
    finally:
        client.close()
    return Answer(b"", "application/json")
