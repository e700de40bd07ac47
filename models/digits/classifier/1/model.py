"""Runs the ONNX digit classifier (model.onnx beside this file) with onnxruntime, batch by batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from modelkit.onnx import session

WEIGHTS = Path(__file__).with_name("model.onnx")


class TritonPythonModel:
    """PIXELS (FP32, [batch, 64]) -> PROBABILITIES (FP32, [batch, 10])."""

    def initialize(self, args: dict[str, str]) -> None:
        self.session = session(WEIGHTS)
        self.input_name = self.session.get_inputs()[0].name
        outputs = [output.name for output in self.session.get_outputs()]
        self.output_name = "probabilities" if "probabilities" in outputs else outputs[-1]

    def execute(self, requests: list[Any]) -> list[Any]:
        batches = [pb_utils.get_input_tensor_by_name(request, "PIXELS").as_numpy() for request in requests]
        sizes = [len(batch) for batch in batches]
        (probabilities,) = self.session.run([self.output_name], {self.input_name: np.concatenate(batches)})
        responses, start = [], 0
        for size in sizes:
            chunk = np.asarray(probabilities[start : start + size], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PROBABILITIES", chunk)]))
            start += size
        return responses
