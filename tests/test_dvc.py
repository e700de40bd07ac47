"""`packager pull` through real DVC (this repository's `ci:dvc` PEX): from the in-repository remote a fresh
clone pulls from by default, and from an S3 remote on loopback (moto).

Pants builds the DVC PEX into this test's sandbox (runtime_package_dependencies in tests/BUILD).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from packager.archives import file_digest
from tests.conftest import S3_CREDENTIALS, RunPackager, s3_client

REPO = Path(__file__).parent.parent
DVC_PEX = Path("ci/dvc.pex")


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A git checkout of this repository's DVC setup and example models (weights present)."""
    assert DVC_PEX.is_file(), "run this test through `./pants test`, which builds the DVC PEX"
    clone = tmp_path / "clone"
    clone.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=clone, check=True)
    (clone / "pants.toml").write_text("")
    shutil.copytree(
        REPO / ".dvc", clone / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "config.local")
    )
    shutil.copy2(REPO / ".dvcignore", clone / ".dvcignore")
    shutil.copytree(REPO / "dvc-store", clone / "dvc-store")
    for model in ("digits", "churn"):
        shutil.copytree(
            REPO / "models" / model,
            clone / "models" / model,
            ignore=shutil.ignore_patterns("python_env.tar.gz"),
        )
    return clone


def _dvc(clone: Path, *args: str) -> None:
    environment = {**os.environ, **S3_CREDENTIALS, "DVC_NO_ANALYTICS": "1"}
    command = [sys.executable, str(DVC_PEX.absolute()), *args]
    result = subprocess.run(command, cwd=clone, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _forget_weights(clone: Path) -> tuple[Path, Path]:
    churn = clone / "models" / "churn" / "churn" / "1" / "model.onnx"
    digits = clone / "models" / "digits" / "classifier" / "1" / "model.onnx"
    churn.unlink()
    digits.unlink()
    shutil.rmtree(clone / ".dvc" / "cache", ignore_errors=True)
    return churn, digits


def _pull(run_packager: RunPackager, clone: Path, *args: str) -> None:
    dvc = f"{sys.executable} {DVC_PEX.absolute()}"
    pulled = run_packager("pull", *args, cwd=clone, env={**S3_CREDENTIALS, "PACKAGER_DVC": dvc})
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr


def test_fresh_clone_pulls_example_weights_from_the_default_remote(
    clone: Path, run_packager: RunPackager
) -> None:
    churn, digits = _forget_weights(clone)
    _pull(run_packager, clone)
    assert file_digest(churn, "md5") == "2db8a36e9b9716dda4ee5faedb5a6d59"
    assert file_digest(digits, "md5") == "52d6672a3dfc15b3aad2d6470e5087c1"


def test_pull_fetches_only_the_named_models_weights_from_s3(
    moto_endpoint: str, clone: Path, run_packager: RunPackager
) -> None:
    client = s3_client(moto_endpoint)
    client.create_bucket(Bucket="model-weights")
    _dvc(clone, "remote", "modify", "--local", "s3", "endpointurl", moto_endpoint)
    _dvc(clone, "fetch")  # into the local cache, from the in-repository remote
    _dvc(clone, "push", "--remote", "s3")
    stored = client.list_objects_v2(Bucket="model-weights")
    assert sorted(item["Key"] for item in stored["Contents"]) == [
        "dvc/files/md5/2d/b8a36e9b9716dda4ee5faedb5a6d59",
        "dvc/files/md5/52/d6672a3dfc15b3aad2d6470e5087c1",
    ]
    shutil.rmtree(clone / "dvc-store")  # nothing can come from the in-repository remote now
    churn, digits = _forget_weights(clone)
    _pull(run_packager, clone, "churn", "--remote", "s3")
    assert file_digest(churn, "md5") == "2db8a36e9b9716dda4ee5faedb5a6d59"
    assert not digits.exists(), "only the weights of the models being processed are pulled"
