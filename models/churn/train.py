"""Trains the churn model and writes its weights and test cases (the model's provenance).

    ./pants run models/churn/train.py

Data: 6000 synthetic customers from scikit-learn's make_classification with a fixed seed (8 features,
5 informative); a seeded split keeps 20% out of training. Writes:
  churn/1/model.onnx    gradient-boosted trees as ONNX (outputs `label` and `probabilities`);
                        tracked by DVC: run `dvc add` + `dvc push` after retraining
  tests/cases/*.json    held-out customers, singly and in batches, with the outputs seen here
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime
from skl2onnx import to_onnx
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import train_test_split

MODEL_DIR = Path(__file__).parent
WEIGHTS = MODEL_DIR / "churn" / "1" / "model.onnx"
CASES = MODEL_DIR / "tests" / "cases"
SEED = 20261127
OPSET = 17
# Case name -> the held-out rows it sends in one request.
REQUESTS = {
    "customer_0": [0],
    "customer_1": [1],
    "customer_2": [2],
    "batch_of_8": list(range(3, 11)),
    "batch_of_20": list(range(11, 31)),
}


def write_case(path: Path, case: Mapping[str, object]) -> None:
    """JSON with two-space indents, and lists of numbers kept on one line."""
    text = json.dumps(case, indent=2)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    path.write_text(text + "\n")


def main() -> None:
    features, churned = make_classification(
        n_samples=6000, n_features=8, n_informative=5, n_redundant=1, weights=[0.8], random_state=SEED
    )
    features = features.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        features, churned, test_size=0.2, random_state=SEED, stratify=churned
    )
    model = GradientBoostingClassifier(
        n_estimators=80, max_depth=3, learning_rate=0.1, random_state=SEED
    ).fit(x_train, y_train)
    onnx_model = to_onnx(model, x_train[:1], options={id(model): {"zipmap": False}}, target_opset=OPSET)
    WEIGHTS.write_bytes(onnx_model.SerializeToString())
    session = onnxruntime.InferenceSession(str(WEIGHTS), providers=["CPUExecutionProvider"])
    labels = session.run(["label"], {"X": x_test})[0]
    print(f"held-out accuracy: {float((labels == y_test).mean()):.4f} on {len(y_test)} customers")

    CASES.mkdir(parents=True, exist_ok=True)
    for old in CASES.glob("*.json"):
        old.unlink()
    for name, rows in REQUESTS.items():
        batch = np.round(x_test[rows], 6)  # what the case file holds, so the outputs below are exact for it
        labels, probabilities = session.run(["label", "probabilities"], {"X": batch})
        case = {
            "description": (
                f"held-out customers {rows[0]}..{rows[-1]}"
                if len(rows) > 1
                else f"held-out customer {rows[0]}"
            ),
            "inputs": [
                {
                    "name": "FEATURES",
                    "datatype": "FP32",
                    "shape": [len(rows), 8],
                    "data": [[round(float(v), 6) for v in row] for row in batch],
                }
            ],
            "outputs": [
                {
                    "name": "PROBABILITY",
                    "datatype": "FP32",
                    "shape": [len(rows), 1],
                    "data": [round(float(p), 6) for p in probabilities[:, 1]],
                    "tolerance": {"absolute": 1e-5},
                },
                {
                    "name": "LABEL",
                    "datatype": "INT64",
                    "shape": [len(rows), 1],
                    "data": [int(label) for label in labels],
                },
            ],
        }
        write_case(CASES / f"{name}.json", case)
    print(
        f"wrote {WEIGHTS.relative_to(MODEL_DIR)} and {len(REQUESTS)} cases under {CASES.relative_to(MODEL_DIR)}"
    )


if __name__ == "__main__":
    main()
