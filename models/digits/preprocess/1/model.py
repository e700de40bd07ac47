"""Decodes encoded images into the 8x8 grayscale features of scikit-learn's digits (ink 16, paper 0)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image, UnidentifiedImageError

SIDE = 8
MAX_INK = 16.0


def features(encoded: bytes) -> np.ndarray:
    """64 float features of one encoded image: grayscale, box-resized to 8x8, dark ink scaled to 0..16."""
    with Image.open(io.BytesIO(encoded)) as image:
        gray = image.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX)
    ink = 255.0 - np.asarray(gray, dtype=np.float32)
    return (ink * (MAX_INK / 255.0)).reshape(SIDE * SIDE)


class TritonPythonModel:
    """IMAGE (encoded bytes, [batch, 1]) -> PIXELS (FP32, [batch, 64])."""

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            try:
                pixels = np.stack([features(bytes(row[0])) for row in images]).astype(np.float32)
            except (UnidentifiedImageError, OSError, ValueError) as error:
                message = f"IMAGE must hold encoded images (PNG, JPEG, ...): {error}"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PIXELS", pixels)]))
        return responses
