"""Trains the digits classifier and writes its weights and test cases (the model's provenance).

    ./pants run models/digits/train.py

Data: scikit-learn's bundled 8x8 digits (1797 images, shipped inside the wheel; nothing is downloaded).
A seeded stratified split keeps a quarter of the images out of training. Writes:
  classifier/1/model.onnx       logistic regression as ONNX (outputs `label` and `probabilities`);
                                tracked by DVC: run `dvc add` + `dvc push` after retraining
  tests/cases/images/*.png      held-out images encoded as PNG (dark ink on white, as a scan would be)
  tests/cases/*.json            one case per image: its true label, and the confidence seen here
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

MODEL_DIR = Path(__file__).parent
WEIGHTS = MODEL_DIR / "classifier" / "1" / "model.onnx"
CASES = MODEL_DIR / "tests" / "cases"
SEED = 20261127
SCANNED = (3, 8)  # another held-out 3 and 8 as 32x32 scans, to exercise resizing
BATCH = (1, 4, 9)  # one case sends the first held-out 1, 4 and 9 as a batch of three
OPSET = 17


def to_png(pixels: np.ndarray, side: int) -> bytes:
    """An 8x8 digit (ink 0..16) as a grayscale PNG of `side` x `side` pixels, dark ink on white."""
    gray = (255 - np.rint(pixels.reshape(8, 8) * 255 / 16)).astype(np.uint8)
    image = Image.fromarray(gray, mode="L").resize((side, side), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_case(path: Path, case: Mapping[str, object]) -> None:
    """JSON with two-space indents, and lists of numbers or strings kept on one line."""
    text = json.dumps(case, indent=2)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    path.write_text(text + "\n")


def main() -> None:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32),
        digits.target,
        test_size=0.25,
        random_state=SEED,
        stratify=digits.target,
    )
    classifier = LogisticRegression(max_iter=5000, C=0.5, random_state=SEED).fit(x_train, y_train)
    model = to_onnx(classifier, x_train[:1], options={id(classifier): {"zipmap": False}}, target_opset=OPSET)
    WEIGHTS.write_bytes(model.SerializeToString())
    session = onnxruntime.InferenceSession(str(WEIGHTS), providers=["CPUExecutionProvider"])
    held_out_accuracy = float((session.run(["label"], {"X": x_test})[0] == y_test).mean())
    print(f"held-out accuracy: {held_out_accuracy:.4f} on {len(y_test)} images")

    for old in CASES.glob("*.json"):
        old.unlink()
    (CASES / "images").mkdir(parents=True, exist_ok=True)
    for old in (CASES / "images").glob("*.png"):
        old.unlink()
    # The cases pin behaviour the model has: each digit's first held-out image it classifies correctly
    # (the held-out accuracy above says how often that is), and for SCANNED the next such image.
    right = session.run(["label"], {"X": x_test})[0] == y_test
    first = {digit: [int(i) for i in np.flatnonzero((y_test == digit) & right)] for digit in range(10)}
    chosen = [(first[digit][0], 8) for digit in range(10)] + [(first[digit][1], 32) for digit in SCANNED]
    for index, side in chosen:
        label = int(y_test[index])
        png = to_png(x_test[index], side)
        name = f"digit_{label}_heldout{index:03d}_{side}px"
        (CASES / "images" / f"{name}.png").write_bytes(png)
        # The PNG holds the pixels rounded to 8 bits; the tolerance covers that rounding.
        probabilities = session.run(["probabilities"], {"X": x_test[index : index + 1]})[0]
        case = {
            "description": f"held-out digit {label} (test-split index {index}), {side}x{side} PNG",
            "inputs": [
                {"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "files": [f"images/{name}.png"]}
            ],
            "outputs": [
                {"name": "LABEL", "datatype": "INT64", "shape": [1, 1], "data": [label]},
                {
                    "name": "CONFIDENCE",
                    "datatype": "FP32",
                    "shape": [1, 1],
                    "data": [round(float(probabilities[0].max()), 6)],
                    "tolerance": {"absolute": 0.01},
                },
            ],
        }
        write_case(CASES / f"{name}.json", case)
    batch = [first[digit][0] for digit in BATCH]
    probabilities = session.run(["probabilities"], {"X": x_test[batch]})[0]
    case = {
        "description": f"held-out digits {', '.join(map(str, BATCH))} in one request of three",
        "inputs": [
            {
                "name": "IMAGE",
                "datatype": "BYTES",
                "shape": [len(batch), 1],
                "files": [f"images/digit_{digit}_heldout{first[digit][0]:03d}_8px.png" for digit in BATCH],
            }
        ],
        "outputs": [
            {"name": "LABEL", "datatype": "INT64", "shape": [len(batch), 1], "data": list(BATCH)},
            {
                "name": "CONFIDENCE",
                "datatype": "FP32",
                "shape": [len(batch), 1],
                "data": [round(float(row.max()), 6) for row in probabilities],
                "tolerance": {"absolute": 0.01},
            },
        ],
    }
    write_case(CASES / "batch_of_three.json", case)
    print(
        f"wrote {WEIGHTS.relative_to(MODEL_DIR)} and {len(chosen) + 1} cases under {CASES.relative_to(MODEL_DIR)}"
    )


if __name__ == "__main__":
    main()
