"""Scores churn with the ONNX gradient-boosted trees beside this file, one onnxruntime call per batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from modelkit.onnx import session

WEIGHTS = Path(__file__).with_name("model.onnx")


class TritonPythonModel:
    """FEATURES (FP32, [batch, 8]) -> PROBABILITY (FP32, [batch, 1]), LABEL (INT64, [batch, 1])."""

    def initialize(self, args: dict[str, str]) -> None:
        self.session = session(WEIGHTS)

    def execute(self, requests: list[Any]) -> list[Any]:
        batches = [pb_utils.get_input_tensor_by_name(request, "FEATURES").as_numpy() for request in requests]
        labels, probabilities = self.session.run(["label", "probabilities"], {"X": np.concatenate(batches)})
        responses, start = [], 0
        for batch in batches:
            end = start + len(batch)
            outputs = [
                pb_utils.Tensor("PROBABILITY", probabilities[start:end, 1:2].astype(np.float32)),
                pb_utils.Tensor("LABEL", labels[start:end].astype(np.int64).reshape(-1, 1)),
            ]
            responses.append(pb_utils.InferenceResponse(outputs))
            start = end
        return responses
