"""`packager new`: a model directory that passes `validate` and `replay` as it is, to edit from there."""

from __future__ import annotations

import json
from pathlib import Path

from packager.errors import UsageError
from packager.modeldir.discovery import name_problem

STEP_CONFIG = """\
# {doc}
name: "{step}"
backend: "python"
max_batch_size: 8
input [ {{ name: "{input}", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [ {{ name: "{output}", data_type: TYPE_FP32, dims: [ {output_dims} ] }} ]
dynamic_batching {{ }}
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters: {{
  key: "EXECUTION_ENV_PATH"
  value: {{ string_value: "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" }}
}}
"""

ENSEMBLE_CONFIG = """\
# The model SageMaker MME serves: raw features in, a score out.
name: "{name}"
platform: "ensemble"
max_batch_size: 8
input [ {{ name: "FEATURES", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [ {{ name: "SCORE", data_type: TYPE_FP32, dims: [ 1 ] }} ]
ensemble_scheduling {{
  step [
    {{
      model_name: "preprocess"
      model_version: -1
      input_map {{ key: "FEATURES" value: "FEATURES" }}
      output_map {{ key: "SCALED" value: "scaled" }}
    }},
    {{
      model_name: "postprocess"
      model_version: -1
      input_map {{ key: "SCALED" value: "scaled" }}
      output_map {{ key: "SCORE" value: "SCORE" }}
    }}
  ]
}}
"""

PREPROCESS = '''\
"""Scales each feature into [0, 1] with fixed bounds (replace with your model's preprocessing)."""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

LOW = np.array([0.0, 0.0, 0.0, 0.0], dtype=np.float32)
HIGH = np.array([10.0, 10.0, 10.0, 10.0], dtype=np.float32)


class TritonPythonModel:
    """FEATURES (FP32, [batch, 4]) -> SCALED (FP32, [batch, 4])."""

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            features = pb_utils.get_input_tensor_by_name(request, "FEATURES").as_numpy()
            scaled = np.clip((features - LOW) / (HIGH - LOW), 0.0, 1.0).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SCALED", scaled)]))
        return responses
'''

POSTPROCESS = '''\
"""Averages the scaled features into one score (replace with your model's postprocessing)."""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """SCALED (FP32, [batch, 4]) -> SCORE (FP32, [batch, 1])."""

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            scaled = pb_utils.get_input_tensor_by_name(request, "SCALED").as_numpy()
            score = scaled.mean(axis=1, keepdims=True).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SCORE", score)]))
        return responses
'''

STEPS = """\
# Triton python-backend steps: formatted by Pants, run inside the model's own environment.
python_sources(name="steps", sources=["*/[0-9]*/*.py"], skip_mypy=True)"""

BUILD = """\
{steps}

# Everything Triton loads and the cases replay, as data for the tests' sandbox.
files(name="model", sources=["**/*", "!BUILD", "!tests/*.py"])

# `./pants test models/{name}::` replays tests/cases/*.json through a real Triton.
python_tests(
    name="tests",
    sources=["tests/test_*.py"],
    # The repository's packager.toml: the runtime (and its conda channels) the cases replay on.
    dependencies=[":model", "//:packager_config"],
    timeout=900,
)
"""

TEST = '''\
"""Replays this model's cases (tests/cases/*.json) through a real Triton, as `packager replay` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.testing import case_ids, check_case

MODEL = Path(__file__).parent.parent


@pytest.mark.parametrize("case", case_ids(MODEL))
def test_case(case: str) -> None:
    check_case(MODEL, case)
'''

REQUIREMENTS = """\
# The Python environment of this model's python steps (packed by `packager env`).
numpy<2  # Triton 2.51's python backend returns empty outputs with numpy 2
"""

CASES = {
    "midrange": ([[5.0, 5.0, 5.0, 5.0]], [[0.5]]),
    "batch_of_two": ([[0.0, 10.0, 0.0, 10.0], [10.0, 10.0, 10.0, 20.0]], [[0.5], [1.0]]),
}


def scaffold(parent: Path, name: str) -> Path:
    """Create `parent/name` as a working model directory; refuse a bad name or an existing directory."""
    problem = name_problem(name)
    if problem:
        raise UsageError(f"model name {name!r} {problem}")
    if name in ("preprocess", "postprocess", "tests"):
        raise UsageError(f"model name {name!r} is taken by one of its own steps; choose another")
    root = parent / name
    if root.exists():
        raise UsageError(f"{root} already exists")
    files = {
        "model_version.txt": "1\n",
        "requirements.txt": REQUIREMENTS,
        "BUILD": BUILD.format(name=name, steps=STEPS),
        "preprocess/config.pbtxt": STEP_CONFIG.format(
            doc="Scales the raw features.",
            step="preprocess",
            input="FEATURES",
            output="SCALED",
            output_dims=4,
        ),
        "preprocess/1/model.py": PREPROCESS,
        "postprocess/config.pbtxt": STEP_CONFIG.format(
            doc="Turns scaled features into the score.",
            step="postprocess",
            input="SCALED",
            output="SCORE",
            output_dims=1,
        ),
        "postprocess/1/model.py": POSTPROCESS,
        f"{name}/config.pbtxt": ENSEMBLE_CONFIG.format(name=name),
        f"{name}/1/.gitkeep": "",
        "tests/test_replay.py": TEST,
    }
    for case, (features, score) in CASES.items():
        document = {
            "description": f"the scaffold's {case.replace('_', ' ')} example",
            "inputs": [
                {"name": "FEATURES", "datatype": "FP32", "shape": [len(features), 4], "data": features}
            ],
            "outputs": [
                {
                    "name": "SCORE",
                    "datatype": "FP32",
                    "shape": [len(score), 1],
                    "data": score,
                    "tolerance": {"absolute": 1e-6},
                }
            ],
        }
        files[f"tests/cases/{case}.json"] = json.dumps(document, indent=2) + "\n"
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root
