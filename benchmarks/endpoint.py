"""Cold vs warm first inference through the multi-model endpoint emulator, for each example model: the
request that loads a target (download, verify and extract, stage, load, infer) against the same request
once it is loaded (median of 5), both through boto3's sagemaker-runtime client and the emulator's HTTP
front, as an application sees them. The ratio is what a cold target costs a caller.

    ./pants run benchmarks/endpoint.py

It serves digits_1 and churn_1 from a file store of its own, on packager.toml's local runtime, building
them from the repository's models when dist/ does not hold artifacts that verify.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from packager.artifacts import verify_artifact
from packager.config import load_config
from packager.endpoint import emulating, fronted
from packager.loadtest import request_body
from packager.modeldir import ModelDir, find_repo_root, load_cases, top_model
from packager.release.stores import open_store
from packager.triton import launcher_for
from packager.validation import validate_model

ROOT = find_repo_root(Path(__file__).parent) or Path.cwd()
MODELS = ("digits", "churn")
WARM_RUNS = 5


def artifact(name: str) -> Path:
    """dist/<name>_1.tar.gz when it verifies, else built now with `python -m packager build`."""
    path = ROOT / "dist" / f"{name}_1.tar.gz"
    try:
        verify_artifact(path)
        return path
    except Exception:  # missing or stale: build it
        same_imports = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        command = [sys.executable, "-m", "packager", "build", name]
        subprocess.run(command, cwd=ROOT, env=same_imports, check=True, capture_output=True)
        return path


def invoke(client: Any, target: str, model: str) -> float:
    """Seconds for one InvokeEndpoint of `target` with the first case of `model` that calls its top."""
    directory = ModelDir(ROOT / "models" / model)
    triton_models = validate_model(directory).triton_models
    top = top_model(triton_models)
    case = next(case for case in load_cases(directory.path, triton_models, top) if case.model == top)
    body = request_body(case)
    started = time.perf_counter()
    answer = client.invoke_endpoint(
        EndpointName="bench", TargetModel=target, ContentType=body.sagemaker_content_type, Body=body.body
    )
    answer["Body"].read()
    return time.perf_counter() - started


def main() -> None:
    runtime = load_config(ROOT).runtime("local")
    print(f"runtime {runtime.name} (Triton {runtime.triton_version}), {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="packager-bench-mme-") as scratch:
        for name in MODELS:
            shutil.copyfile(artifact(name), Path(scratch) / f"{name}_1.tar.gz")
        store = open_store(f"file:{scratch}", None)
        launcher = launcher_for(runtime)
        with (
            emulating(store, launcher, log_path=Path(scratch) / "mme.log") as emulator,
            fronted(emulator) as url,
        ):
            client = boto3.client(
                "sagemaker-runtime",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id="local",
                aws_secret_access_key="local",
            )
            print(f"{'model':<8} {'cold s':>8} {'warm ms':>8} {'cold/warm':>10}  cold start steps")
            for name in MODELS:
                target = f"{name}_1.tar.gz"
                cold = invoke(client, target, name)
                warm = statistics.median(invoke(client, target, name) for _ in range(WARM_RUNS))
                steps = next(start for start in emulator.cold_starts if start.target == target)
                print(f"{name:<8} {cold:>8.2f} {warm * 1e3:>8.1f} {cold / warm:>9.0f}x  {steps.line()}")
        store.close()


if __name__ == "__main__":
    main()
