"""packager.toml: embedded defaults, the repository's file, and clear errors for a wrong one."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.config import load_config
from packager.settings import DEFAULT_RUNTIME, ConfigError

REPO = Path(__file__).parent.parent


def test_embedded_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config.path is None
    assert config.runtime() == DEFAULT_RUNTIME
    assert config.runtime().python == "3.11"
    assert [c.requirement for c in config.runtime().constraints] == ["numpy<2"]


def test_the_repository_file_matches_the_defaults() -> None:
    config = load_config(REPO)
    assert config.path == REPO / "packager.toml"
    assert config.runtime() == DEFAULT_RUNTIME


def test_a_second_runtime_and_choosing_it(tmp_path: Path) -> None:
    (tmp_path / "packager.toml").write_text(
        '[packager]\nruntime = "prod"\n'
        '[runtime.prod]\ntriton_version = "2.62.0"\npython = "3.12"\n'
        'constraints = [{ requirement = "protobuf<6", reason = "demo" }]\n'
    )
    config = load_config(tmp_path)
    assert config.runtime().name == "prod" and config.runtime().python == "3.12"
    assert config.runtime("local") == DEFAULT_RUNTIME


@pytest.mark.parametrize(
    "text, message",
    [
        ("[packager]\nruntime = \n[x]\n", "packager.toml: Invalid value (at line 2, column 11)"),
        ("[packager]\nruntmie = 'x'\n", "[packager] has unknown keys runtmie"),
        ("[runtime.x]\npython = '3.11'\n", "[runtime.x] needs triton_version"),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2.51.0'\nlauncher = 'ssh'\n",
            "launcher must be one of local",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2.51.0'\nconstraints = ['numpy<2']\n",
            "constraints are",
        ),
        ("[packager]\nruntime = 'nope'\n", "no runtime 'nope' in"),
    ],
)
def test_errors_name_the_file_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "packager.toml").write_text(text)
    with pytest.raises(ConfigError, match="packager.toml") as error:
        load_config(tmp_path).runtime()
    assert message in str(error.value)
