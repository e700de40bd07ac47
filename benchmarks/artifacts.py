"""Benchmarks of artifacts and publishing, each a ratio against a baseline measured in the same run.

    ./pants run benchmarks/artifacts.py [--gib 1.0]

1. building `<model>_<version>.tar.gz` for a model with >= 1 GiB of weights (float32, as trained weights
   are) vs `tar -czf` of the same files, vs `tar | pigz` (every core; needs pigz), and vs a plain `cp` of
   the same bytes (time and size); compression on one thread vs every core (the same bytes);
2. pushing that artifact to S3 (moto on loopback) with the packager's store vs boto3's default
   `upload_file`;
3. re-pushing the identical artifact (one HEAD) vs the first push.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import boto3
import numpy as np
from moto.server import ThreadedMotoServer

from benchmarks.timing import timed
from packager.archives import Member, file_digest, usable_cores, write_tar_gz
from packager.artifacts import build_artifact
from packager.config import load_config
from packager.environments import ensure_environment, env_builder_for, lock_model
from packager.modeldir import ModelDir, find_repo_root, scaffold
from packager.release import Destination, publish
from packager.release.stores import open_store
from packager.triton import free_ports, staged_repository
from packager.validation import validate_model

ROOT = find_repo_root(Path(__file__).parent) or Path.cwd()
RUNTIME = load_config(ROOT).runtime("local")  # packager.toml's: its conda channel is local


def shell(command: str) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)


def line(name: str, baseline: str, base: float, measured: str, value: float, unit: str = "s") -> None:
    print(
        f"{name:<28} {baseline:>18} {base:>9.2f} {unit:<4} {measured:>18} {value:>9.2f} {unit:<4} {base / value:>7.1f}x"
    )


def model_with_weights(root: Path, gib: float) -> ModelDir:
    """A scaffolded model whose preprocess step carries `gib` GiB of float32 weights in 64 MiB shards."""
    model = ModelDir(scaffold(root, "heavy"))
    shard = 64 * 1024 * 1024
    generator = np.random.default_rng(0)
    for index in range(int(gib * 1024**3) // shard):
        weights = generator.standard_normal(shard // 4, dtype=np.float32)
        (model.path / "preprocess" / "1" / f"weights-{index:03d}.bin").write_bytes(weights.tobytes())
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0, help="GiB of weights in the model (default 1)")
    arguments = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="packager-bench-artifacts-"))
    try:
        run(scratch, arguments.gib)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(scratch: Path, gib: float) -> None:
    model = model_with_weights(scratch / "models", gib)
    lock_model(model, RUNTIME)
    report = validate_model(model)
    environment = ensure_environment(model, RUNTIME, env_builder_for(RUNTIME))
    weights = sum(path.stat().st_size for path in model.path.rglob("weights-*.bin"))
    print(f"model with {weights / 1024**3:.2f} GiB of float32 weights, {os.cpu_count()} CPUs")
    print(f"{'benchmark':<28} {'baseline':>18} {'':>14} {'measured':>18} {'':>14} {'ratio':>8}")

    started = time.perf_counter()
    artifact = build_artifact(report, RUNTIME, environment=environment, out_dir=scratch / "dist")
    build = time.perf_counter() - started
    size = artifact.path.stat().st_size
    rebuilt = build_artifact(report, RUNTIME, environment=environment, out_dir=scratch / "again")
    assert rebuilt.sha256 == artifact.sha256, "two builds of the same model differ"
    digests = timed(lambda: [file_digest(path) for path in model.path.rglob("*") if path.is_file()])
    members = [Member("weights", "file", source=path) for path in sorted(model.path.rglob("weights-*.bin"))]
    one_thread = timed(lambda: write_tar_gz(scratch / "one.tar.gz", members, threads=1))
    all_threads = timed(lambda: write_tar_gz(scratch / "all.tar.gz", members))
    assert file_digest(scratch / "one.tar.gz") == file_digest(scratch / "all.tar.gz"), "threads change bytes"
    with staged_repository(report, environment, "packed") as same_files:
        tar = timed(lambda: shell(f"tar -czf {scratch}/tar.tar.gz -C {same_files} ."))
        pigz = timed(lambda: shell(f"tar -cf - -C {same_files} . | pigz > {scratch}/pigz.tar.gz"))
        copy = timed(lambda: shell(f"cp -r {same_files} {scratch}/copy && sync"))
    tar_size = (scratch / "tar.tar.gz").stat().st_size
    line("build vs tar -czf (time)", "tar -czf", tar, "packager build", build)
    line("build vs tar -czf (size)", "tar -czf", tar_size / 1e6, "packager build", size / 1e6, "MB")
    line("build vs tar | pigz (time)", "tar | pigz", pigz, "packager build", build)
    line("build vs cp (time)", "cp -r + sync", copy, "packager build", build)
    line("compression threads", "1 thread", one_thread, f"{usable_cores()} threads", all_threads)
    print(
        f"{'':<28} two builds identical (sha256 {artifact.sha256[:12]}); 1 and {usable_cores()} threads identical"
    )
    print(f"{'':<28} of the build, {digests:.2f} s is the manifest's digests (a read before the archive's)")

    (port,) = free_ports(1)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for name, value in {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint,
        }.items():
            os.environ[name] = value
        client = boto3.client("s3")
        client.create_bucket(Bucket="bench")
        plain = timed(lambda: client.upload_file(str(artifact.path), "bench", "plain/heavy_1.tar.gz"))
        target = Destination(open_store("s3://bench/packager", None), "heavy_1.tar.gz", production=True)
        push = timed(lambda: publish(artifact, target, "0" * 40))
        again = timed(lambda: publish(artifact, target, "0" * 40))
        line("push (time)", "upload_file", plain, "packager push", push)
        print(
            f"{'':<28} throughput: upload_file {size / 1e6 / plain:.0f} MB/s, packager push {size / 1e6 / push:.0f} MB/s"
        )
        line("re-push identical", "first push", push, "re-push (HEAD)", again)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
