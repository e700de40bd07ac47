"""Picks the most probable digit and reports its probability as the confidence."""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """PROBABILITIES (FP32, [batch, 10]) -> LABEL (INT64, [batch, 1]), CONFIDENCE (FP32, [batch, 1])."""

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            probabilities = pb_utils.get_input_tensor_by_name(request, "PROBABILITIES").as_numpy()
            labels = probabilities.argmax(axis=1).astype(np.int64).reshape(-1, 1)
            confidence = probabilities.max(axis=1).astype(np.float32).reshape(-1, 1)
            outputs = [pb_utils.Tensor("LABEL", labels), pb_utils.Tensor("CONFIDENCE", confidence)]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
