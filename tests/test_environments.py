"""Execution environments: requirement normalization and refusals (fast), and real venv builds."""

from __future__ import annotations

import base64
import hashlib
import shutil
import tarfile
from pathlib import Path

import pytest

from packager.archives import file_digest
from packager.settings import DEFAULT_RUNTIME, Constraint, Runtime
from packager.modeldir import ModelDir
from packager.environments import (
    RequirementsError,
    ensure_environment,
    env_builder_for,
    environment_key,
    find_interpreter,
    read_requirements,
)
from packager.environments.conda import CondaBuilder
from packager.environments.requirements import check_constraints
from packager.environments.venv import VenvBuilder, make_relocatable
from packager.errors import EnvironmentFailure


def _requirements(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return path


def test_equivalent_files_normalize_to_the_same_requirements(tmp_path: Path) -> None:
    one = read_requirements(
        _requirements(tmp_path, "# env\nNumPy < 2  # pinned\n\nonnxruntime==1.32.0\n"), DEFAULT_RUNTIME
    )
    two = read_requirements(_requirements(tmp_path, "onnxruntime == 1.32.0\nnumpy<2\n"), DEFAULT_RUNTIME)
    assert one == two == ["numpy<2", "onnxruntime==1.32.0"]


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "numpy>=2",
            "requirements.txt:2: numpy>=2 conflicts with numpy<2 on runtime 'local': Triton 2.51's python",
        ),
        ("numpy==2.1.0", "requirements.txt:2: numpy==2.1.0 conflicts with numpy<2"),
        ("-e ./mylib", "requirements.txt:2: -e is not supported"),
        ("mylib @ https://example.com/mylib.whl", "requirements.txt:2: URL requirements cannot be cached"),
        ("not a requirement!", "requirements.txt:2: not a requirement"),
    ],
)
def test_refusals_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(RequirementsError, match="requirements.txt:2") as error:
        read_requirements(_requirements(tmp_path, f"pillow\n{line}\n"), DEFAULT_RUNTIME)
    assert message in str(error.value)


def test_numpy_below_2_is_fine(tmp_path: Path) -> None:
    assert read_requirements(_requirements(tmp_path, "numpy>=1.20,<2\n"), DEFAULT_RUNTIME) == [
        "numpy<2,>=1.20"
    ]


def test_key_covers_runtime_builder_and_its_fingerprint() -> None:
    fingerprint = VenvBuilder().fingerprint("3.11")
    assert fingerprint["version"].startswith("3.11.") and fingerprint["platform"]
    base = environment_key(["numpy<2"], DEFAULT_RUNTIME, "venv", fingerprint)
    other_runtime = Runtime("x", "2.51.0", "3.11", constraints=(Constraint("numpy<1.25", "test"),))
    other_interpreter = {**fingerprint, "interpreter": "/opt/python3.11/bin/python3.11"}
    assert base == environment_key(["numpy<2"], DEFAULT_RUNTIME, "venv", dict(fingerprint))
    assert base != environment_key(["numpy<2", "pillow"], DEFAULT_RUNTIME, "venv", fingerprint)
    assert base != environment_key(["numpy<2"], other_runtime, "venv", fingerprint)
    assert base != environment_key(["numpy<2"], DEFAULT_RUNTIME, "conda", fingerprint)
    assert base != environment_key(["numpy<2"], DEFAULT_RUNTIME, "venv", other_interpreter)


def test_builders_come_from_the_runtimes_configuration() -> None:
    assert isinstance(env_builder_for(DEFAULT_RUNTIME), VenvBuilder)
    conda_runtime = Runtime("c", "2.51.0", "3.11", env_builder="conda")
    assert isinstance(env_builder_for(conda_runtime), CondaBuilder)


def test_installed_packages_are_checked_against_the_constraints(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    check_constraints(requirements, {"numpy": "1.26.4"}, DEFAULT_RUNTIME)
    with pytest.raises(RequirementsError, match="got numpy 2.1.0, which breaks runtime 'local'"):
        check_constraints(requirements, {"numpy": "2.1.0"}, DEFAULT_RUNTIME)


def test_relocation_drops_every_mention_of_the_build_directory(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\ncommand = /usr/bin/python3 -m venv {venv}\n")
    (venv / "bin" / "activate").write_text(f'VIRTUAL_ENV="{venv}"\n')
    (venv / "bin" / "activate.fish").write_text("")
    (venv / "bin" / "tool").write_text(f"#!{venv}/bin/python3.11\nimport tool\n")
    quotes = "'" * 3
    long_form = f'#!/bin/sh\n{quotes}exec\' {venv}/bin/python3.11 "$0" "$@"\n\' {quotes}\nimport other\n'
    (venv / "bin" / "other").write_text(long_form)  # what pip writes when the path is too long for #!
    record = venv / "lib" / "python3.11" / "site-packages" / "tool-1.0.dist-info" / "RECORD"
    record.parent.mkdir(parents=True)
    record.write_text("../../../bin/tool,sha256=stale,99\ntool/__init__.py,sha256=x,1\n")
    make_relocatable(venv)
    assert (venv / "bin" / "other").read_text() == "#!/usr/bin/env python3.11\nimport other\n"
    script = b"#!/usr/bin/env python3.11\nimport tool\n"
    new_hash = base64.urlsafe_b64encode(hashlib.sha256(script).digest()).rstrip(b"=").decode()
    assert (
        record.read_text()
        == f"../../../bin/tool,sha256={new_hash},{len(script)}\ntool/__init__.py,sha256=x,1\n"
    )
    assert (venv / "pyvenv.cfg").read_text() == "home = /usr/bin\n"
    assert str(venv) not in (venv / "bin" / "activate").read_text()
    assert (venv / "bin" / "tool").read_text() == "#!/usr/bin/env python3.11\nimport tool\n"
    assert not (venv / "bin" / "activate.fish").exists()


def test_another_python_minor_than_the_stubs_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pyenv = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    other = str(pyenv[0]) if pyenv else shutil.which("python3.12")
    assert other, "this test needs a CPython 3.12 (pyenv or PATH)"
    monkeypatch.setenv("PACKAGER_PYTHON_3_11", other)
    with pytest.raises(
        EnvironmentFailure,
        match=r"PACKAGER_PYTHON_3_11=.* is CPython 3.12; the target's python-backend stub runs CPython 3.11",
    ):
        find_interpreter("3.11")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PACKAGER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _model(path: Path, requirements: str) -> ModelDir:
    path.mkdir(parents=True)
    (path / "requirements.txt").write_text(requirements)
    return ModelDir(path)


def test_real_venv_build_is_cached_and_shared(tmp_path: Path, cache: Path) -> None:
    first = ensure_environment(
        _model(tmp_path / "a", "packaging==24.2\n"), DEFAULT_RUNTIME, VenvBuilder(), progress=False
    )
    assert not first.cache_hit
    assert first.tarball.is_file() and first.tarball.parent.parent == cache / "envs"
    with tarfile.open(first.tarball) as tar:
        names = tar.getnames()
        activate = tar.extractfile("bin/activate").read().decode()  # type: ignore[union-attr]
    assert "bin/python" in names and "lib/python3.11/site-packages/packaging/version.py" in names
    assert not any("__pycache__" in name for name in names)
    assert 'VIRTUAL_ENV="$(cd' in activate
    assert first.metadata()["packages"] == {"packaging": "24.2"}
    assert (first.unpacked / "bin" / "activate").is_file()

    again = ensure_environment(ModelDir(tmp_path / "a"), DEFAULT_RUNTIME, VenvBuilder(), progress=False)
    assert again.cache_hit and again.key == first.key
    same_requirements = ensure_environment(
        _model(tmp_path / "b", "# same, written differently\npackaging == 24.2\n"),
        DEFAULT_RUNTIME,
        VenvBuilder(),
        progress=False,
    )
    assert same_requirements.cache_hit and same_requirements.directory == first.directory


def test_transitive_conflict_with_the_runtime_is_the_models_error(tmp_path: Path, cache: Path) -> None:
    # requests 2.32.3 needs urllib3>=1.21.1: no version satisfies both.
    strict = Runtime("strict", "2.51.0", "3.11", constraints=(Constraint("urllib3<1", "a test constraint"),))
    with pytest.raises(
        RequirementsError, match="requirements.txt: pip cannot install these requirements"
    ) as error:
        ensure_environment(
            _model(tmp_path / "m", "requests==2.32.3\n"), strict, VenvBuilder(), progress=False
        )
    assert "urllib3" in str(error.value)
    assert not list((cache / "envs").glob("*/python_env.tar.gz")), "nothing half-built is cached"


def test_a_requirement_that_does_not_exist_is_the_models_error(tmp_path: Path, cache: Path) -> None:
    model = _model(tmp_path / "m", "packager-no-such-package-7f3a==1.0\n")
    with pytest.raises(RequirementsError, match=r"m/requirements.txt: pip cannot install") as error:
        ensure_environment(model, DEFAULT_RUNTIME, VenvBuilder(), progress=False)
    assert "No matching distribution found for packager-no-such-package-7f3a==1.0" in str(error.value)
    assert error.value.exit_code == 1


CONDA = next((tool for tool in ("micromamba", "mamba", "conda") if shutil.which(tool)), None)


@pytest.mark.skipif(
    CONDA is None or not shutil.which("conda-pack"),
    reason="conda (or mamba) and conda-pack are not installed",
)
def test_real_conda_build(tmp_path: Path, cache: Path) -> None:
    conda_runtime = Runtime(
        "conda", "2.51.0", "3.11", env_builder="conda", constraints=DEFAULT_RUNTIME.constraints
    )
    environment = ensure_environment(
        _model(tmp_path / "c", "packaging==24.2\n"), conda_runtime, CondaBuilder(), progress=False
    )
    assert (environment.unpacked / "bin" / "activate").is_file()
    packages = environment.metadata()["packages"]
    assert isinstance(packages, dict) and packages.get("packaging") == "24.2"


def test_two_cold_builds_are_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same requirements, two empty caches (so two build directories): the same tarball, console scripts
    and their RECORD hashes included."""
    digests = []
    for attempt in ("first", "second"):
        monkeypatch.setenv("PACKAGER_CACHE", str(tmp_path / attempt / "cache"))
        model = _model(tmp_path / attempt / "model", "wheel==0.45.1\n")
        environment = ensure_environment(model, DEFAULT_RUNTIME, VenvBuilder(), progress=False)
        assert not environment.cache_hit
        assert (environment.unpacked / "bin" / "wheel").read_text().startswith("#!/usr/bin/env python")
        digests.append(file_digest(environment.tarball))
    assert digests[0] == digests[1]
