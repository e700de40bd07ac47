"""Sending a case to a running server over each protocol Triton speaks (HTTP and gRPC, binary tensors).

A decoupled model's case (`Case.stream`) goes over each protocol's stream instead: gRPC's bidirectional
stream (`async_stream_infer`, with the empty final response enabled so that the end of every stream is
seen), and HTTP's `generate_stream`, Server-Sent Events of JSON objects, where the case's tensors fit it
(`Stream.generate_problem`). Every sender returns the responses, in order, that came before the final flag:
one for a model that is not decoupled.
"""

from __future__ import annotations

import http.client
import itertools
import json
import queue
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from packager.modeldir import Case, Tensor
from packager.triton import Server

REQUEST_TIMEOUT = 60.0
FINAL = "triton_final_response"
STREAMS = {"http": "generate_stream", "grpc": "stream"}  # how each protocol carries a decoupled model's case
Outputs = dict[str, np.ndarray]


class NotSent(Exception):
    """The protocol cannot carry this case (HTTP's generate_stream, for some decoupled models' inputs)."""


class StreamFailed(Exception):
    """A stream ended without the final flag, or answered with an error."""


class Sender(Protocol):
    """Sends one case and returns what came back: each response's outputs, by name."""

    def __call__(self, case: Case) -> list[Outputs]:
        """The responses before the final flag (one, for a model that is not decoupled)."""

    def close(self) -> None:
        """Close the client's connections."""


class HttpSender:
    """Binary tensors over the KServe v2 HTTP/REST protocol; a decoupled model's case over generate_stream."""

    def __init__(self, server: Server) -> None:
        self.address = server.endpoints.http
        self.client = httpclient.InferenceServerClient(
            self.address, connection_timeout=REQUEST_TIMEOUT, network_timeout=REQUEST_TIMEOUT
        )

    def __call__(self, case: Case) -> list[Outputs]:
        if case.stream is not None:
            if case.stream.generate_problem is not None:
                raise NotSent(f"generate_stream cannot carry it ({case.stream.generate_problem})")
            return self._generate_stream(case)
        inputs = []
        for tensor in case.inputs:
            item = httpclient.InferInput(tensor.name, tensor.shape, tensor.datatype)
            item.set_data_from_numpy(tensor.data, binary_data=True)
            inputs.append(item)
        outputs = [httpclient.InferRequestedOutput(tensor.name, binary_data=True) for tensor in case.outputs]
        result = self.client.infer(case.model, inputs, outputs=outputs)
        return [_collect(result, [tensor.name for tensor in case.outputs])]

    def _generate_stream(self, case: Case) -> list[Outputs]:
        """POST the case's inputs, each a flat JSON list under its name, and read every event."""
        metadata = self.client.get_model_metadata(case.model)["outputs"]
        datatypes = {output["name"]: str(output["datatype"]) for output in metadata}
        host, _, port = self.address.rpartition(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT)
        try:
            connection.request(
                "POST",
                f"/v2/models/{urllib.parse.quote(case.model, safe='')}/generate_stream",
                json.dumps({tensor.name: tensor.json_values() for tensor in case.inputs}),
                {"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            if response.status != 200:
                raise StreamFailed(f"HTTP {response.status}: {triton_error(response.read())}")
            events = [json.loads(line[len(b"data:") :]) for line in response if line.startswith(b"data:")]
        finally:
            connection.close()
        responses = []
        for index, event in enumerate(events):
            if "error" in event:
                raise StreamFailed(f"response {index} is an error: {event['error']}")
            expected = (
                case.stream.responses[index] if case.stream and index < len(case.stream.responses) else ()
            )
            responses.append(_from_json(event, datatypes, expected))
        return responses

    def close(self) -> None:
        self.client.close()


class GrpcSender:
    """Tensors over the KServe v2 gRPC protocol; a decoupled model's case over a gRPC stream of its own."""

    def __init__(self, server: Server) -> None:
        self.client = grpcclient.InferenceServerClient(server.endpoints.grpc)

    def __call__(self, case: Case) -> list[Outputs]:
        if case.stream is not None:
            stream = GrpcStream(self.client)
            try:
                return stream.request(case.model, case.inputs).responses
            finally:
                stream.close()
        outputs = [grpcclient.InferRequestedOutput(tensor.name) for tensor in case.outputs]
        result = self.client.infer(
            case.model, grpc_inputs(case.inputs), outputs=outputs, client_timeout=REQUEST_TIMEOUT
        )
        return [_collect(result, [tensor.name for tensor in case.outputs])]

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class Streamed:
    """A decoupled model's answer to one request: each response's outputs before the final flag, and the
    seconds to the first response (None: the final flag came alone) and to the final flag."""

    responses: list[Outputs]
    first_s: float | None
    last_s: float


class GrpcStream:
    """Requests over one gRPC stream of `client` (a client holds one stream at a time), each waited for
    until its final flag; `close` ends the stream."""

    def __init__(self, client: grpcclient.InferenceServerClient) -> None:
        self.client = client
        self.answers: queue.SimpleQueue[tuple[Any, InferenceServerException | None]] = queue.SimpleQueue()
        self.ids = itertools.count()
        client.start_stream(callback=lambda result, error: self.answers.put((result, error)))

    def request(self, model: str, inputs: Sequence[Tensor], timeout: float = REQUEST_TIMEOUT) -> Streamed:
        """Send one request and collect its responses until the final flag; StreamFailed when the model
        answers an error or never sends the flag within `timeout` seconds."""
        request_id = str(next(self.ids))
        started = time.perf_counter()
        self.client.async_stream_infer(
            model, grpc_inputs(inputs), request_id=request_id, enable_empty_final_response=True
        )
        responses: list[Outputs] = []
        first = None
        while True:
            try:
                result, error = self.answers.get(timeout=max(0.0, started + timeout - time.perf_counter()))
            except queue.Empty:
                raise StreamFailed(
                    f"no final response within {timeout:g} s (after {len(responses)}): a decoupled model ends "
                    "each request's stream with pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL"
                ) from None
            if error is not None:
                raise StreamFailed(f"response {len(responses)} is an error: {error.message()}")
            response = result.get_response()
            if response.id != request_id:
                continue  # what an earlier request, given up on, sent late
            final = FINAL in response.parameters and response.parameters[FINAL].bool_param
            if response.outputs or not final:
                responses.append(_collect(result, [output.name for output in response.outputs]))
                first = time.perf_counter() - started if first is None else first
            if final:
                return Streamed(responses, first, time.perf_counter() - started)

    def close(self) -> None:
        self.client.stop_stream(cancel_requests=True)


def grpc_inputs(tensors: Sequence[Tensor]) -> list[grpcclient.InferInput]:
    """A case's input tensors as tritonclient's gRPC inputs."""
    inputs = []
    for tensor in tensors:
        item = grpcclient.InferInput(tensor.name, tensor.shape, tensor.datatype)
        item.set_data_from_numpy(tensor.data)
        inputs.append(item)
    return inputs


def _collect(result: Any, names: Sequence[str]) -> Outputs:
    collected = {}
    for name in names:
        value = result.as_numpy(name)
        if value is not None:
            collected[name] = value
    return collected


def _from_json(event: dict[str, Any], datatypes: dict[str, str], expected: Sequence[Tensor]) -> Outputs:
    """A generate_stream event's outputs (by the model's output names and datatypes) as arrays: JSON gives
    a flat list (a scalar for one value), so each takes the shape the case expects where the number of
    values agrees."""
    shapes = {tensor.name: tensor.shape for tensor in expected}
    outputs = {}
    for name, datatype in datatypes.items():
        if name not in event:
            continue
        flat = np.array(event[name]).reshape(-1)
        if datatype == "BYTES":
            values = np.array([str(value).encode() for value in flat], dtype=np.object_)
        else:
            values = flat.astype(triton_to_np_dtype(datatype))
        shape = shapes.get(name)
        outputs[name] = (
            values.reshape(shape) if shape is not None and np.prod(shape) == values.size else values
        )
    return outputs


def triton_error(body: bytes) -> str:
    """Triton's error message in a JSON error body (the body itself otherwise)."""
    text = body.decode(errors="replace")
    try:
        document = json.loads(text)
    except ValueError:
        return text
    return str(document.get("error", text)) if isinstance(document, dict) else text


SENDERS: dict[str, Callable[[Server], Sender]] = {"http": HttpSender, "grpc": GrpcSender}
PROTOCOLS = tuple(SENDERS)
