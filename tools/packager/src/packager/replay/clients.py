"""Sending a case to a running server over each protocol Triton speaks (HTTP and gRPC, binary tensors)."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from packager.modeldir import Case
from packager.triton import Server

REQUEST_TIMEOUT = 60.0


class Sender(Protocol):
    """Sends one case and returns the outputs it asked for, by name."""

    def __call__(self, case: Case) -> dict[str, np.ndarray]:
        """The case's outputs as the server returned them."""

    def close(self) -> None:
        """Close the client's connections."""


class HttpSender:
    """Binary tensors over the KServe v2 HTTP/REST protocol."""

    def __init__(self, server: Server) -> None:
        self.client = httpclient.InferenceServerClient(
            server.endpoints.http, connection_timeout=REQUEST_TIMEOUT, network_timeout=REQUEST_TIMEOUT
        )

    def __call__(self, case: Case) -> dict[str, np.ndarray]:
        inputs = []
        for tensor in case.inputs:
            item = httpclient.InferInput(tensor.name, tensor.shape, tensor.datatype)
            item.set_data_from_numpy(tensor.data, binary_data=True)
            inputs.append(item)
        outputs = [httpclient.InferRequestedOutput(tensor.name, binary_data=True) for tensor in case.outputs]
        result = self.client.infer(case.model, inputs, outputs=outputs)
        return _collect(result, case)

    def close(self) -> None:
        self.client.close()


class GrpcSender:
    """Tensors over the KServe v2 gRPC protocol."""

    def __init__(self, server: Server) -> None:
        self.client = grpcclient.InferenceServerClient(server.endpoints.grpc)

    def __call__(self, case: Case) -> dict[str, np.ndarray]:
        inputs = []
        for tensor in case.inputs:
            item = grpcclient.InferInput(tensor.name, tensor.shape, tensor.datatype)
            item.set_data_from_numpy(tensor.data)
            inputs.append(item)
        outputs = [grpcclient.InferRequestedOutput(tensor.name) for tensor in case.outputs]
        result = self.client.infer(case.model, inputs, outputs=outputs, client_timeout=REQUEST_TIMEOUT)
        return _collect(result, case)

    def close(self) -> None:
        self.client.close()


def _collect(result: Any, case: Case) -> dict[str, np.ndarray]:
    collected = {}
    for tensor in case.outputs:
        value = result.as_numpy(tensor.name)
        if value is not None:
            collected[tensor.name] = value
    return collected


SENDERS: dict[str, Callable[[Server], Sender]] = {"http": HttpSender, "grpc": GrpcSender}
PROTOCOLS = tuple(SENDERS)
