"""Running a model's cases from pytest, so that `./pants test models/<name>::` replays what
`packager replay` replays, through the same code (the cases are data; nothing is written twice)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from packager.environments import env_builder_for
from packager.modeldir import CASES_DIR, ModelDir, case_files, find_repo_root
from packager.replay import ModelReplay, replay_model
from packager.triton import launcher_for
from packager.workspace import Workspace


def case_ids(model_dir: Path) -> list[str]:
    """The ids of a model's cases (their paths under tests/cases, without .json)."""
    return [
        path.relative_to(model_dir / CASES_DIR).with_suffix("").as_posix() for path in case_files(model_dir)
    ]


@functools.cache
def replay_results(model_dir: Path) -> ModelReplay:
    """Replay every case once per test process, on the repository's default runtime."""
    runtime = Workspace.find(find_repo_root(model_dir)).runtime(None)
    log = Path(tempfile.mkdtemp(prefix="packager-test-")) / f"{model_dir.name}-triton.log"
    return replay_model(
        ModelDir(model_dir),
        runtime,
        builder=env_builder_for(runtime),
        launcher=launcher_for(runtime),
        log_path=log,
    )


def check_case(model_dir: Path, case_id: str) -> None:
    """Fail (AssertionError) with expected vs got unless the case passed over every protocol."""
    replay = replay_results(model_dir)
    assert replay.error is None, replay.error
    results = [result for result in replay.results if result.case == case_id]
    assert results, f"case {case_id} did not run"
    problems = [f"[{result.protocol}] {problem}" for result in results for problem in result.problems]
    assert not problems, "\n".join(problems)
