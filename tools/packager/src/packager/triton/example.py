"""How to try a served model at once, as `packager serve` prints it: the inputs of the top model's first case
(zeros from its config when it has none), sent by a ready-to-paste `curl` to Triton's /infer, or, for a
decoupled model, to its HTTP `generate_stream` (`curl -N`: each response an event as it comes); where
generate_stream cannot carry the inputs, a short Python snippet streams them over gRPC instead. A body too
long for one shell argument (a 3x224x224 image) goes into a file beside the server's log, and the curl
sends that file (`-d @file`)."""

from __future__ import annotations

import json
import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packager.modeldir import (
    Case,
    Tensor,
    TritonModel,
    decoupled_model,
    example_input_tensors,
    generate_problem,
)

# Linux refuses one argument longer than 128 KiB ("Argument list too long"); well under it, a body is inline.
INLINE_BODY = 64 * 1024


@dataclass(frozen=True)
class Example:
    """A way to try a model: what it sends (`sends`: its case's id, or "zeros"), a shell command where one
    can send it, else a Python snippet (`python`), and why a decoupled model's example streams over gRPC
    (`why_grpc`)."""

    model: str
    sends: str
    curl: str | None
    python: str | None = None
    decoupled: bool = False
    why_grpc: str | None = None


def example_for(
    http: str,
    grpc: str,
    *,
    model: str,
    triton_models: Mapping[str, TritonModel],
    cases: Sequence[Case] = (),
    bodies: Path | None = None,
) -> Example:
    """How to try `model` at the server's HTTP and gRPC endpoints (host:port), with the inputs of its
    first case that JSON can carry, or zeros from its config; a body too long to be inline is written
    into `bodies` (a directory), when given."""
    config = triton_models[model].loaded_config
    case = next(
        (case for case in cases if case.model == model and not any(t.binary for t in case.inputs)), None
    )
    inputs = case.inputs if case is not None else example_input_tensors(config)
    sends = f"its case {case.id}" if case is not None else "an example request (zeros)"
    spill = bodies / f"{model}-example.json" if bodies is not None else None
    if decoupled_model(model, triton_models) is None:
        return Example(model, sends, curl_command(http, model, inputs=inputs, spill=spill))
    problem = generate_problem(config, inputs)
    if problem is None:
        return Example(model, sends, stream_curl(http, model, inputs=inputs, spill=spill), decoupled=True)
    return Example(model, sends, None, stream_snippet(grpc, model, inputs), True, problem)


def example_request(inputs: Sequence[Tensor]) -> dict[str, object]:
    """A KServe v2 JSON inference request holding `inputs`."""
    tensors = [
        {
            "name": tensor.name,
            "shape": tensor.shape,
            "datatype": tensor.datatype,
            "data": tensor.json_values(),
        }
        for tensor in inputs
    ]
    return {"inputs": tensors}


def curl_command(http: str, model: str, *, inputs: Sequence[Tensor], spill: Path | None = None) -> str:
    """A shell command that POSTs `example_request(inputs)` to `model` at the HTTP endpoint `http` (a long
    body from the file `spill`, written now)."""
    body = _data(json.dumps(example_request(inputs)), spill)
    return shlex.join(
        ["curl", "-sS", _url(http, model, "infer"), "-H", "Content-Type: application/json", "-d", body]
    )


def stream_curl(http: str, model: str, *, inputs: Sequence[Tensor], spill: Path | None = None) -> str:
    """A shell command that POSTs `inputs` to a decoupled `model`'s generate_stream (each a flat JSON list
    under its name) and prints each response as it comes (`-N`: unbuffered); a long body as curl_command's."""
    body = _data(json.dumps({tensor.name: tensor.json_values() for tensor in inputs}), spill)
    url = _url(http, model, "generate_stream")
    return shlex.join(["curl", "-sS", "-N", url, "-H", "Content-Type: application/json", "-d", body])


def _data(body: str, spill: Path | None) -> str:
    """curl's -d argument: `body`, or `@<spill>` once written there when it is too long to be inline."""
    if spill is None or len(body) <= INLINE_BODY:
        return body
    spill.parent.mkdir(parents=True, exist_ok=True)
    spill.write_text(body)
    return f"@{spill}"


def stream_snippet(grpc: str, model: str, inputs: Sequence[Tensor]) -> str:
    """Python that streams `inputs` to a decoupled `model` at the gRPC endpoint `grpc` with tritonclient
    and prints each response's outputs until the final flag."""
    lines = [
        "import queue",
        "import numpy as np",
        "import tritonclient.grpc as grpcclient",
        f"client = grpcclient.InferenceServerClient({grpc!r})",
        "answers = queue.Queue()",
        "client.start_stream(callback=lambda result, error: answers.put(error or result))",
        "inputs = []",
    ]
    for tensor in inputs:
        values = tensor.data.reshape(-1).tolist()
        lines += [
            f"inputs.append(grpcclient.InferInput({tensor.name!r}, {tensor.shape}, {tensor.datatype!r}))",
            f"inputs[-1].set_data_from_numpy(np.array({values!r}, dtype={tensor.data.dtype.name!r}).reshape({tensor.shape}))",
        ]
    lines += [
        f"client.async_stream_infer({model!r}, inputs, enable_empty_final_response=True)",
        "while True:",
        "    answer = answers.get()",
        "    if isinstance(answer, Exception):",
        "        raise answer",
        "    response = answer.get_response()",
        "    if response.outputs:",
        "        print({output.name: answer.as_numpy(output.name).tolist() for output in response.outputs})",
        '    if response.parameters["triton_final_response"].bool_param:',
        "        break",
        "client.stop_stream()",
        "client.close()",
    ]
    return "\n".join(lines)


def _url(http: str, model: str, endpoint: str) -> str:
    return f"http://{http}/v2/models/{urllib.parse.quote(model, safe='')}/{endpoint}"
