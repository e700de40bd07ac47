"""The fake server's fronts (see `fake`): the KServe v2 HTTP and gRPC endpoints it answers on loopback, as
far as the packager's clients use them: readiness, and inference with JSON or binary tensors (HTTP) and
raw tensor contents (gRPC). Everything else answers 404 (HTTP) or UNIMPLEMENTED (gRPC)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import (
    deserialize_bytes_tensor,
    np_to_triton_dtype,
    serialize_byte_tensor,
    triton_to_np_dtype,
)

HEADER_SIZE = "Inference-Header-Content-Length"  # Triton's binary tensor extension
GRPC_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 500: grpc.StatusCode.INTERNAL}


class InferError(Exception):
    """A request the server refuses, with the HTTP status Triton answers it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Answering(Protocol):
    """What the fronts ask of the server behind them."""

    def alive(self) -> bool:
        """Whether it runs."""

    def is_ready(self, model: str) -> bool:
        """Whether `model` is loaded."""

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], outputs: list[str]
    ) -> dict[str, np.ndarray]:
        """The `outputs` named (all, where none is) that `model` answers `inputs` with, or InferError."""


def datatype_of(array: np.ndarray) -> str:
    """The KServe v2 datatype of an array (objects are BYTES)."""
    return str(np_to_triton_dtype(array.dtype))


def from_raw(raw: bytes, datatype: str, shape: list[int]) -> np.ndarray:
    """A tensor from its raw bytes (BYTES: each element prefixed by its length)."""
    if datatype == "BYTES":
        return np.asarray(deserialize_bytes_tensor(raw), dtype=np.object_).reshape(shape)
    return np.frombuffer(raw, dtype=triton_to_np_dtype(datatype)).reshape(shape)


def to_raw(array: np.ndarray) -> bytes:
    """A tensor's raw bytes, as Triton sends them."""
    if array.dtype == np.object_:  # one object: the elements, each after its length
        return bytes(serialize_byte_tensor(array).item()) if array.size else b""
    return np.ascontiguousarray(array).tobytes()


def _from_json(entry: Mapping[str, Any]) -> np.ndarray:
    """A tensor a JSON request gives as data (BYTES as text)."""
    datatype, shape = str(entry["datatype"]), [int(dim) for dim in entry["shape"]]
    flat = np.asarray(entry["data"], dtype=np.object_).reshape(-1)
    if datatype == "BYTES":
        return np.array([str(value).encode() for value in flat], dtype=np.object_).reshape(shape)
    return flat.astype(triton_to_np_dtype(datatype)).reshape(shape)


def http_inputs(request: Mapping[str, Any], binary: bytes) -> dict[str, np.ndarray]:
    """A KServe v2 HTTP request's inputs: JSON data, or binary data in order after the JSON header."""
    inputs, offset = {}, 0
    for entry in request["inputs"]:
        size = entry.get("parameters", {}).get("binary_data_size")
        if size is None:
            inputs[str(entry["name"])] = _from_json(entry)
            continue
        raw, offset = binary[offset : offset + int(size)], offset + int(size)
        inputs[str(entry["name"])] = from_raw(raw, str(entry["datatype"]), [int(d) for d in entry["shape"]])
    return inputs


def http_response(
    model: str, request: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's size where binary tensors follow it: an output goes binary
    where the request asks (per output, or `binary_data_output` for all)."""
    everything = bool(request.get("parameters", {}).get("binary_data_output", False))
    binary_asked = {
        str(entry["name"]): bool(entry.get("parameters", {}).get("binary_data", everything))
        for entry in request.get("outputs", [])
    }
    entries, binary = [], b""
    for name, array in outputs.items():
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
        if binary_asked.get(name, everything):
            raw = to_raw(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            binary += raw
        elif array.dtype == np.object_:
            entry["data"] = [bytes(value).decode(errors="replace") for value in array.reshape(-1)]
        else:
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    header = json.dumps({"model_name": model, "model_version": "1", "outputs": entries}).encode()
    return (header + binary, len(header)) if binary else (header, None)


class _HttpFront(ThreadingHTTPServer):
    """The HTTP endpoint, on its own thread; `close` also cuts the connections clients keep open."""

    daemon_threads = True

    def __init__(self, server: Answering, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.answering = server
        self.connections: set[socket.socket] = set()
        self.guard = threading.Lock()
        self.thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="fake-triton-http", daemon=True
        )
        self.thread.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.guard:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.guard:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        with self.guard:
            open_ones = list(self.connections)
        for connection in open_ones:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # the client closed it already
                pass
        self.thread.join()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpFront

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake server's log is its own."""

    def _parts(self) -> list[str]:
        return [urllib.parse.unquote(part) for part in self.path.split("?")[0].strip("/").split("/")]

    def do_GET(self) -> None:
        parts, answering = self._parts(), self.server.answering
        if parts in (["v2", "health", "ready"], ["v2", "health", "live"]):
            self._reply(200 if answering.alive() else 400, b"")
        elif len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "ready":
            self._reply(200 if answering.is_ready(parts[2]) else 400, b"")
        else:
            self._error(404, "Not Found")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        parts = self._parts()
        if len(parts) != 4 or parts[:2] != ["v2", "models"] or parts[3] != "infer":
            self._error(404, "Not Found")
            return
        size = self.headers.get(HEADER_SIZE)
        try:
            request = json.loads(body[: int(size)] if size else body)
            inputs = http_inputs(request, body[int(size) :] if size else b"")
            wanted = [str(entry["name"]) for entry in request.get("outputs", [])]
            outputs = self.server.answering.infer(parts[2], inputs, wanted)
        except InferError as error:
            self._error(error.status, error.message)
            return
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            self._error(400, f"malformed request: {error}")
            return
        data, header_size = http_response(parts[2], request, outputs)
        headers = {HEADER_SIZE: str(header_size)} if header_size is not None else {}
        self._reply(200, data, "application/octet-stream" if headers else "application/json", headers)

    def _error(self, status: int, message: str) -> None:
        self._reply(status, json.dumps({"error": message}).encode())

    def _reply(
        self, status: int, data: bytes, kind: str = "application/json", headers: Mapping[str, str] = {}
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The gRPC endpoint's answers (the generated base answers UNIMPLEMENTED to the rest)."""

    def __init__(self, server: Answering) -> None:
        self.answering = server

    def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=self.answering.alive())

    def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.answering.alive())

    def ModelReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ModelReadyResponse(ready=self.answering.is_ready(request.name))

    def ModelInfer(self, request: Any, context: Any) -> Any:
        if len(request.raw_input_contents) != len(request.inputs):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the fake server reads raw_input_contents only")
        inputs = {
            tensor.name: from_raw(raw, tensor.datatype, list(tensor.shape))
            for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True)
        }
        try:
            outputs = self.answering.infer(
                request.model_name, inputs, [output.name for output in request.outputs]
            )
        except InferError as error:
            context.abort(GRPC_CODES.get(error.status, grpc.StatusCode.UNIMPLEMENTED), error.message)
        response = service_pb2.ModelInferResponse(
            model_name=request.model_name, model_version="1", id=request.id
        )
        for name, array in outputs.items():
            tensor = response.outputs.add(name=name, datatype=datatype_of(array))
            tensor.shape.extend(array.shape)
            response.raw_output_contents.append(to_raw(array))
        return response


class Fronts:
    """Both endpoints of one server, listening on 127.0.0.1 until `close`."""

    def __init__(self, server: Answering, http_port: int, grpc_port: int) -> None:
        self.http = _HttpFront(server, http_port)
        self.workers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fake-triton-grpc")
        self.grpc = grpc.server(self.workers)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_Servicer(server), self.grpc)
        self.grpc.add_insecure_port(f"127.0.0.1:{grpc_port}")
        self.grpc.start()

    def close(self) -> None:
        self.grpc.stop(grace=None).wait()
        self.workers.shutdown(wait=True)
        self.http.close()
