"""ONNX sessions the way every example step runs them: CPU only, one thread per model instance."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def session(weights: Path) -> ort.InferenceSession:
    """An onnxruntime session on `weights`, which DVC must have pulled."""
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: run `dvc pull` for this model")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(weights), options, providers=["CPUExecutionProvider"])
