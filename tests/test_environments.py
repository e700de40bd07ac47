"""Execution environments: requirement normalization and refusals (fast), locks made by uv, and real
venv builds from them (the conda builder: test_conda.py)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import tarfile
from pathlib import Path

import pytest

from packager.archives import file_digest
from packager.environments import (
    ensure_environment,
    env_builder_for,
    environment_key,
    find_interpreter,
    lock_model,
    read_requirements,
)
from packager.environments.conda import CondaBuilder
from packager.environments.requirements import check_constraints
from packager.environments.venv import VenvBuilder, make_relocatable
from packager.errors import EnvironmentFailure
from packager.modeldir import ModelDir, RequirementsError
from packager.settings import DEFAULT_RUNTIME, Constraint, Runtime


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
        (
            "mylib @ https://example.com/mylib.whl",
            "requirements.txt:2: URL requirements cannot be locked by content",
        ),
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


def test_key_covers_lock_runtime_builder_and_its_fingerprint() -> None:
    fingerprint = VenvBuilder().fingerprint("3.11")
    assert fingerprint["version"].startswith("3.11.") and fingerprint["platform"]
    lock = "numpy==1.26.4 --hash=sha256:00\n"
    base = environment_key(lock, DEFAULT_RUNTIME, builder="venv", fingerprint=fingerprint)
    other_runtime = Runtime("x", "2.51.0", "3.11", constraints=(Constraint("numpy<1.25", "test"),))
    other_interpreter = {**fingerprint, "interpreter": "/opt/python3.11/bin/python3.11"}
    assert base == environment_key(lock, DEFAULT_RUNTIME, builder="venv", fingerprint=dict(fingerprint))
    assert base != environment_key(
        lock + "pillow==11.0.0\n", DEFAULT_RUNTIME, builder="venv", fingerprint=fingerprint
    )
    assert base != environment_key(lock, other_runtime, builder="venv", fingerprint=fingerprint)
    assert base != environment_key(lock, DEFAULT_RUNTIME, builder="conda", fingerprint=fingerprint)
    assert base != environment_key(lock, DEFAULT_RUNTIME, builder="venv", fingerprint=other_interpreter)


def test_builders_come_from_the_runtimes_configuration() -> None:
    assert isinstance(env_builder_for(DEFAULT_RUNTIME), CondaBuilder), "self-contained by default"
    venv_runtime = Runtime("v", "2.51.0", "3.11", env_builder="venv")
    assert isinstance(env_builder_for(venv_runtime), VenvBuilder)


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
    uv_form = f"#!/bin/sh\n{quotes}exec' '{venv}/bin/python' \"$0\" \"$@\"\n' {quotes}\nimport third\n"
    (venv / "bin" / "third").write_text(uv_form)  # uv's form quotes the path
    record = venv / "lib" / "python3.11" / "site-packages" / "tool-1.0.dist-info" / "RECORD"
    record.parent.mkdir(parents=True)
    record.write_text("../../../bin/tool,sha256=stale,99\ntool/__init__.py,sha256=x,1\n")
    make_relocatable(venv)
    assert (venv / "bin" / "other").read_text() == "#!/usr/bin/env python3.11\nimport other\n"
    assert (venv / "bin" / "third").read_text() == "#!/usr/bin/env python\nimport third\n"
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


def _model(path: Path, requirements: str, runtime: Runtime = DEFAULT_RUNTIME) -> ModelDir:
    """A model directory with these requirements, locked for `runtime` (uv, from PyPI)."""
    path.mkdir(parents=True)
    (path / "requirements.txt").write_text(requirements)
    model = ModelDir(path)
    lock_model(model, runtime)
    return model


def test_a_lock_pins_everything_with_hashes_for_the_runtimes_platform(tmp_path: Path) -> None:
    model = _model(tmp_path / "m", "requests==2.32.3\n")
    lock = (model.path / "requirements.lock").read_text()
    assert lock.startswith("# packager lock: requirements=")
    assert " python=3.11 platform=x86_64-manylinux_2_28 constraints=" in lock.splitlines()[0]
    pinned = [line.split("==")[0] for line in lock.splitlines() if "==" in line and not line.startswith(" ")]
    assert pinned == ["certifi", "charset-normalizer", "idna", "requests", "urllib3"], "transitive ones too"
    assert lock.count("--hash=sha256:") >= len(pinned)
    assert lock_model(model, DEFAULT_RUNTIME).changed is False, "locking again changes nothing"
    (model.path / "requirements.txt").write_text("requests==2.32.3\nidna\n")
    with pytest.raises(RequirementsError, match=r"requirements.lock:1:1: stale: requirements.txt changed"):
        ensure_environment(model, DEFAULT_RUNTIME, VenvBuilder())
    other = Runtime("other", "2.51.0", "3.12", constraints=DEFAULT_RUNTIME.constraints)
    (model.path / "requirements.txt").write_text("requests==2.32.3\n")
    with pytest.raises(
        RequirementsError,
        match=r"locked for CPython 3.11, .*`packager lock --runtime other m`",
    ):
        ensure_environment(model, other, VenvBuilder())


def test_real_venv_build_is_cached_and_shared(tmp_path: Path, cache: Path) -> None:
    first = ensure_environment(_model(tmp_path / "a", "packaging==24.2\n"), DEFAULT_RUNTIME, VenvBuilder())
    assert not first.cache_hit and not first.portable
    assert first.tarball.is_file() and first.tarball.parent.parent == cache / "envs"
    with tarfile.open(first.tarball) as tar:
        names = tar.getnames()
        activate = tar.extractfile("bin/activate").read().decode()  # type: ignore[union-attr]
    assert "bin/python" in names and "lib/python3.11/site-packages/packaging/version.py" in names
    assert not any("__pycache__" in name for name in names)
    assert 'VIRTUAL_ENV="$(cd' in activate
    assert first.metadata()["packages"] == {"packaging": "24.2"}
    assert (first.unpacked / "bin" / "activate").is_file()
    bytecode = first.unpacked / "lib/python3.11/site-packages/packaging/__pycache__/version.cpython-311.pyc"
    assert bytecode.is_file(), "the unpacked tree a server starts on is compiled once, at build"

    again = ensure_environment(ModelDir(tmp_path / "a"), DEFAULT_RUNTIME, VenvBuilder())
    assert again.cache_hit and again.key == first.key
    same = _model(tmp_path / "b", "# same, written differently\npackaging == 24.2\n")
    shared = ensure_environment(same, DEFAULT_RUNTIME, VenvBuilder())
    assert shared.cache_hit and shared.directory == first.directory, "identical locks share one environment"


def test_a_conflict_with_the_runtime_is_the_models_error_at_lock_time(tmp_path: Path) -> None:
    # requests 2.32.3 needs urllib3>=1.21.1: no version satisfies both.
    strict = Runtime("strict", "2.51.0", "3.11", constraints=(Constraint("urllib3<1", "a test constraint"),))
    with pytest.raises(RequirementsError, match="requirements.txt: uv pip compile cannot satisfy") as error:
        _model(tmp_path / "m", "requests==2.32.3\n", strict)
    assert "urllib3" in str(error.value) and error.value.exit_code == 1


def test_a_requirement_that_does_not_exist_is_the_models_error(tmp_path: Path) -> None:
    with pytest.raises(
        RequirementsError, match=r"m/requirements.txt: uv pip compile cannot satisfy"
    ) as error:
        _model(tmp_path / "m", "packager-no-such-package-7f3a==1.0\n")
    assert "packager-no-such-package-7f3a" in str(error.value) and error.value.exit_code == 1


def test_a_platform_without_a_wheel_is_the_models_error(tmp_path: Path) -> None:
    mac = Runtime("mac", "2.51.0", "3.11", platform="aarch64-apple-darwin")
    with pytest.raises(RequirementsError, match="uv pip compile cannot satisfy"):
        _model(tmp_path / "m", "tritonclient[grpc]==2.51.0\nnvidia-pytriton==0.7.0\n", mac)


def test_an_interrupted_build_leaves_nothing_half_built_and_the_rerun_completes(
    tmp_path: Path, cache: Path
) -> None:
    model = _model(tmp_path / "m", "packaging==24.2\n")
    builder = VenvBuilder()
    real_build = builder.build

    def killed(lock: Path, python: str, destination: Path) -> None:
        real_build(lock, python, destination)
        raise KeyboardInterrupt  # Ctrl-C after installing, before packing

    builder.build = killed  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        ensure_environment(model, DEFAULT_RUNTIME, builder)
    assert [path.name for path in (cache / "envs").iterdir() if not path.name.endswith(".lock")] == []
    lock = (model.path / "requirements.lock").read_text()
    key = environment_key(
        lock, DEFAULT_RUNTIME, builder="venv", fingerprint=VenvBuilder().fingerprint("3.11")
    )[:24]
    (cache / "envs" / f".{key}.abc123").mkdir()  # what a SIGKILLed build of it leaves: no code ran
    built = ensure_environment(model, DEFAULT_RUNTIME, VenvBuilder())
    assert not built.cache_hit and built.tarball.is_file()
    assert [path.name for path in (cache / "envs").iterdir() if path.name.startswith(".")] == []


def test_two_cold_venv_builds_are_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same lock, two empty caches (so two build directories): the same tarball, console scripts and
    their RECORD hashes included."""
    digests = []
    for attempt in ("first", "second"):
        monkeypatch.setenv("PACKAGER_CACHE", str(tmp_path / attempt / "cache"))
        model = _model(tmp_path / attempt / "model", "wheel==0.45.1\n")
        environment = ensure_environment(model, DEFAULT_RUNTIME, VenvBuilder())
        assert not environment.cache_hit
        assert (environment.unpacked / "bin" / "wheel").read_text().startswith("#!/usr/bin/env python")
        digests.append(file_digest(environment.tarball))
    assert digests[0] == digests[1]
