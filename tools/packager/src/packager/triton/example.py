"""An example request for a served model, made from its config alone, and the `curl` that sends it:
what `packager serve` prints so that a model can be tried at once."""

from __future__ import annotations

import json
import shlex
import urllib.parse

from tritonclient.grpc import model_config_pb2

from packager.modeldir import example_inputs


def example_request(config: model_config_pb2.ModelConfig) -> dict[str, object]:
    """A KServe v2 JSON inference request holding each required input of `config`, zeros in its shape
    (as a case template has them: see `example_inputs`)."""
    return {"inputs": example_inputs(config)}


def curl_command(http: str, model: str, config: model_config_pb2.ModelConfig) -> str:
    """A ready-to-paste shell command that POSTs `example_request(config)` to `model` at the HTTP
    endpoint `http` (host:port)."""
    url = f"http://{http}/v2/models/{urllib.parse.quote(model, safe='')}/infer"
    body = json.dumps(example_request(config))
    return shlex.join(["curl", "-sS", url, "-H", "Content-Type: application/json", "-d", body])
