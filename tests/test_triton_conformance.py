"""The validator corpus against a real Triton 2.51: each case's recorded verdict is what Triton does.

test_corpus.py pins what `packager validate` says of each case; this file pins, with the same cases,
that the verdicts recorded next to them are Triton's own. Together: the validator neither misses what
Triton refuses nor refuses what Triton accepts (beyond the packaging rules the cases name).
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from packager.settings import DEFAULT_RUNTIME, Runtime
from packager.triton import Launcher, ServerError
from packager.triton.container import ContainerLauncher
from packager.triton.local import LocalLauncher

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(path.parent for path in CORPUS.glob("*/*/case.toml"))
LOAD_TIMEOUT = 10.0  # two cases hang Triton's load; the rest answer within a few seconds


@pytest.fixture(scope="module", params=["local", "container"])
def launcher(request: pytest.FixtureRequest) -> Launcher:
    """Each case against a local Triton process and against Triton in its container."""
    if request.param == "local":
        return LocalLauncher.for_runtime(DEFAULT_RUNTIME)
    runtime: Runtime = request.getfixturevalue("container_runtime")
    return ContainerLauncher.for_runtime(runtime)


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.parent.name}/{case.name}")
def test_recorded_verdict_is_tritons(case: Path, launcher: Launcher, tmp_path: Path) -> None:
    expected = tomllib.loads((case / "case.toml").read_text())["triton"]
    repository = tmp_path / "repository"
    shutil.copytree(case, repository, symlinks=True)
    models = sorted(
        entry.name for entry in repository.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    refusals = {}
    with launcher.start(repository, tmp_path / "triton.log") as server:
        for model in models:
            try:
                server.load(model, timeout=LOAD_TIMEOUT)
            except ServerError as error:
                refusals[model] = str(error).splitlines()[0]
                if "hung load" in refusals[model]:
                    break  # the server is stuck; what it did is known
    verdict = "refuses" if refusals else "accepts"
    assert verdict == expected, refusals
