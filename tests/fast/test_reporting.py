"""The library reports instead of printing: what is slow (an environment built, an artifact replayed) goes
to the report a plan gives, and a plan that gives none says nothing, on stdout or stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.environments.fake import FakeEnvBuilder, fake_lock
from packager.modeldir import LOCK_FILE, ModelDir, scaffold
from packager.pipeline import BuildPlan, build_models
from packager.reporting import to_stderr
from packager.settings import DEFAULT_RUNTIME
from tests.fast.conftest import SCAFFOLD_PINS


def _unbuilt(parent: Path, name: str) -> ModelDir:
    """A scaffolded model whose lock no other test's environment shares, so that its environment is built."""
    model = ModelDir(scaffold(parent, name))
    lock = fake_lock(model.path, DEFAULT_RUNTIME, SCAFFOLD_PINS)
    (model.path / LOCK_FILE).write_text(f"{lock}# only {parent}'s\n")
    return model


def test_a_build_says_what_is_slow_to_its_plans_report_only(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    heard: list[str] = []
    plan = BuildPlan(DEFAULT_RUNTIME, FakeEnvBuilder(), tmp_path / "dist", report=heard.append)
    (built,) = build_models([_unbuilt(tmp_path / "heard", "fraud")], plan)
    assert built.error is None and built.artifact.path.is_file()
    assert len(heard) == 1 and heard[0].startswith("fraud: building the fake environment "), heard
    (quiet,) = build_models(
        [_unbuilt(tmp_path / "quiet", "fraud")], BuildPlan(DEFAULT_RUNTIME, FakeEnvBuilder(), tmp_path / "q")
    )
    assert quiet.error is None
    assert capfd.readouterr() == ("", ""), "the library prints nothing of its own"


def test_to_stderr_writes_the_line_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    to_stderr("fraud: building the fake environment")
    assert capfd.readouterr() == ("", "fraud: building the fake environment\n")
