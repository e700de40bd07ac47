"""A test case as the bytes of one KServe v2 HTTP request, built once and sent many times.

Numeric tensors and text BYTES go as plain Triton v2 JSON (`inputs` with name, shape, datatype and the
row-major `data`); a BYTES tensor that is not UTF-8 text (digits' PNG files) goes through the binary-tensor
extension: tritonclient.http builds the body (a JSON header, then the raw tensors) and its header length,
which Triton reads from `Inference-Header-Content-Length` and a SageMaker endpoint from the content type
`application/vnd.sagemaker-triton.binary+json;json-header-size=N`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import tritonclient.http as httpclient

from packager.endpoint import BINARY_JSON, triton_headers
from packager.modeldir import Case, Tensor

JSON_TYPE = "application/json"


@dataclass(frozen=True)
class RequestBody:
    """One case's inference request: the Triton model it goes to, the body, (binary tensors) the length of
    the body's JSON header, and the case's input tensors, which a gRPC stream sends as they are."""

    case: str
    model: str
    body: bytes
    json_size: int | None = None
    inputs: tuple[Tensor, ...] = field(default=(), compare=False, repr=False)

    @property
    def http_headers(self) -> dict[str, str]:
        """The headers Triton's HTTP endpoint reads the body with (as the endpoint emulator forwards it)."""
        return triton_headers(self.sagemaker_content_type)

    @property
    def sagemaker_content_type(self) -> str:
        """The ContentType a SageMaker Triton endpoint reads the body with."""
        return JSON_TYPE if self.json_size is None else f"{BINARY_JSON};json-header-size={self.json_size}"


def request_body(case: Case) -> RequestBody:
    """The body of `case`'s request: plain JSON, or binary tensors where a BYTES input is not text."""
    if not any(tensor.binary for tensor in case.inputs):
        inputs = [
            {
                "name": tensor.name,
                "shape": tensor.shape,
                "datatype": tensor.datatype,
                "data": tensor.json_values(),
            }
            for tensor in case.inputs
        ]
        body = json.dumps({"inputs": inputs}, separators=(",", ":")).encode()
        return RequestBody(case.id, case.model, body, inputs=case.inputs)
    items = []
    for tensor in case.inputs:
        item = httpclient.InferInput(tensor.name, tensor.shape, tensor.datatype)
        item.set_data_from_numpy(tensor.data, binary_data=tensor.binary)
        items.append(item)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(items)
    return RequestBody(case.id, case.model, bytes(body), json_size, case.inputs)
