"""packager.toml: embedded defaults, every key parsed, type-checked and used (through the CLI), and every
mistake refused at its line and column with what is allowed."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from packager.config import load_config
from packager.errors import UsageError
from packager.release import new_entry, record
from packager.release.stores import open_store
from packager.settings import DEFAULT_RUNTIME, ConfigError
from tests.conftest import RunPackager, git

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
    assert config.default_runtime == "auto" and sorted(config.runtimes) == ["container", "local", "ngc-24-10"]
    assert config.runtime("local") == replace(
        DEFAULT_RUNTIME, channels=("local",)
    ), "but for the local channel"
    container = config.runtime("container")
    assert (container.launcher, container.image, container.server_package) == (
        "container",
        "",
        "nvidia-pytriton==0.7.0",
    )
    assert config.stores == load_config(None).stores and config.public_key is None


def test_every_key_is_read(run_packager: RunPackager, tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "release.pub").write_text("a public key\n")
    (tmp_path / "packager.toml").write_text(
        '[packager]\nruntime = "prod"\n'
        '[runtime.prod]\ntriton_version = "2.62.0"\npython = "3.12"\nserver_package = "x==1"\n'
        'launcher = "local"\nenv_builder = "conda"\ndescription = "an NGC image"\nnetwork = true\ngpu_as_cpu = true\n'
        'constraints = [{ requirement = "protobuf<6", reason = "demo" }]\n'
        '[stores]\nstaging = "s3://bucket/staging"\nproduction = "file:///srv/models"\n'
        'production_branches = ["release", "main"]\n'
        '[signing]\npublic_key = "keys/release.pub"\n'
        '[endpoint]\ncold_start_budget = 45\nover_budget = "warn"\n'
    )
    shown = run_packager("config", "--json", cwd=tmp_path, env={"PACKAGER_STAGING_URI": ""})
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["runtime"] == "prod"
    assert document["runtimes"]["prod"] == {
        "name": "prod",
        "triton_version": "2.62.0",
        "python": "3.12",
        "server_package": "x==1",
        "launcher": "local",
        "env_builder": "conda",
        "description": "an NGC image",
        "constraints": [{"requirement": "protobuf<6", "reason": "demo"}],
        "image": "",
        "shm_size": "256m",
        "network": True,
        "gpu_as_cpu": True,
        "platform": "x86_64-manylinux_2_28",
        "channels": ["conda-forge"],
    }
    assert document["runtimes"]["local"]["triton_version"] == "2.51.0", "the embedded runtime stays"
    assert document["stores"] == {
        "staging": "s3://bucket/staging",
        "production": "file:///srv/models",
        "production_branches": ["release", "main"],
    }
    assert document["signing"]["public_key"] == str(tmp_path / "keys" / "release.pub")
    assert document["endpoint"] == {"cold_start_budget": 45.0, "over_budget": "warn"}
    overridden = run_packager("config", "--json", cwd=tmp_path, env={"PACKAGER_STAGING_URI": "file:///x"})
    assert json.loads(overridden.stdout)["stores"]["staging"] == "file:///x"


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("[packager]\nruntime = \n[x]\n", "2:11", "not valid TOML: Invalid value"),
        (
            "[packagr]\n",
            "1:1",
            "the top level has unknown key 'packagr' (allowed: endpoint, packager, runtime, signing, stores)",
        ),
        ("[packager]\nruntmie = 'x'\n", "2:1", "[packager] has unknown key 'runtmie' (allowed: runtime)"),
        ("[packager]\nruntime = 'nope'\n", "2:11", "[packager] runtime 'nope' is not defined (known: local)"),
        ("[packager]\nruntime = 3\n", "2:11", "[packager] runtime must be a string, not int 3"),
        ("packager = 1\n", "1:12", "[packager] must be a table"),
        ("[runtime.x]\npython = '3.11'\n", "1:1", "[runtime.x] needs triton_version"),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = 2.51\n",
            "3:18",
            "[runtime.x] triton_version must be a string",
        ),
        (
            "[runtime.x]\npython = 'py3'\ntriton_version = '2.51.0'\n",
            "2:10",
            "[runtime.x] python is a CPython minor",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nimgae = 'nvcr.io/x'\n",
            "4:1",
            "[runtime.x] has unknown key 'imgae'",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nlauncher = 'container'\n",
            "4:12",
            "[runtime.x] a container runtime names its image, or a server_package to build one from",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nshm_size = 'lots'\n",
            "4:12",
            "[runtime.x] shm_size is a size such as",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nnetwork = 'yes'\n",
            "4:11",
            "[runtime.x] network must be true or false, not str 'yes'",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nlauncher = 'ssh'\n",
            "4:12",
            "launcher must be one of container, local, not 'ssh'",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nenv_builder = 'pip'\n",
            "4:15",
            "env_builder must be one of conda, venv",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nconstraints = ['numpy<2']\n",
            "4:16",
            "constraints are {",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nconstraints = [\n"
            "  { requirement = 'numpy<2', reason = 'ok' },\n  { requirement = 'numpy<<2', reason = 'typo' },\n]\n",
            "6:19",
            "constraint 'numpy<<2' is not a requirement",
        ),
        (
            "[stores]\nstagign = 'file:x'\n",
            "2:1",
            "[stores] has unknown key 'stagign' (allowed: production, production_branches, staging)",
        ),
        (
            "[stores]\nstaging = 'ftp://host/x'\n",
            "2:11",
            "[stores] staging 'ftp://host/x' is not a store URI (unknown scheme 'ftp')",
        ),
        (
            "[stores]\nproduction_branches = 'release'\n",
            "2:23",
            "[stores] production_branches must be a list, not str 'release'",
        ),
        (
            "[stores]\nproduction_branches = []\n",
            "2:23",
            "[stores] production_branches is a non-empty list of branch names",
        ),
        (
            "[signing]\npublic_key = 'keys/none.pub'\n",
            "2:14",
            "[signing] public_key keys/none.pub: no such file",
        ),
        (
            "[signing]\nprivate_key = 'k'\n",
            "2:1",
            "[signing] has unknown key 'private_key' (allowed: public_key)",
        ),
        ("[endpoint]\ncold_start_budget = '30s'\n", "2:21", "[endpoint] cold_start_budget is seconds"),
        ("[endpoint]\ncold_start_budget = 0\n", "2:21", "[endpoint] cold_start_budget is seconds"),
        ("[endpoint]\nover_budget = 'ignore'\n", "2:15", '[endpoint] over_budget is "refuse" or "warn"'),
        (
            "[endpoint]\nbudget = 30\n",
            "2:1",
            "[endpoint] has unknown key 'budget' (allowed: cold_start_budget, over_budget)",
        ),
    ],
)
def test_a_wrong_key_is_refused_at_its_line_and_column(
    run_packager: RunPackager, tmp_path: Path, text: str, where: str, message: str
) -> None:
    (tmp_path / "packager.toml").write_text(text)
    result = run_packager("validate", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"packager.toml:{where}: {message}" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


RUNTIME_X = '[runtime.x]\ntriton_version = "2.51.0"\npython = "3.11"\n'


@pytest.mark.parametrize(
    "text, culprit, message",
    [
        (RUNTIME_X + 'channels = ["conda-forge", ""]\n', '""', "[runtime.x] channels is a non-empty list"),
        (
            'runtime = { x = { triton_version = "2.51.0", python = 3.11 } }\n',
            "3.11",
            "[runtime.x] python must be a string, not float 3.11",
        ),
        (
            'runtime = { x = { triton_version = "2.51.0", python = "3.11", imgae = "y" } }\n',
            "imgae",
            "[runtime.x] has unknown key 'imgae'",
        ),
        (
            '[stores]\n"production_branches"         =     "release"  # a comment\n',
            '"release"',
            "[stores] production_branches must be a list, not str 'release'",
        ),
        (
            '[stores]\nproduction_branches = [\n  "main",\n  # "release", "x",\n  42,\n]\n',
            "42",
            "[stores] production_branches is a non-empty list of branch names",
        ),
        (
            '[runtime.x]\ndescription = """\npython = "3.11"\n"""\ntriton_version = "2"\npython = "py3"\n',
            '"py3"',
            "[runtime.x] python is a CPython minor",
        ),
        ('endpoint.over_budget = "never"\n', '"never"', '[endpoint] over_budget is "refuse" or "warn"'),
        ("[[stores]]\nstaging = 'file:x'\n", "[[stores]]", "[stores] must be a table"),
        (
            RUNTIME_X + "constraints = [{ reason = 'typo', requirement = 'numpy<<2' }]\n",
            "'numpy<<2'",
            "constraint 'numpy<<2' is not a requirement",
        ),
    ],
    ids=[
        "nested-table-array-item",
        "inline-table-value",
        "inline-table-key",
        "after-a-long-key",
        "multi-line-array",
        "after-a-multi-line-string",
        "dotted-key",
        "array-of-tables",
        "key-in-an-inline-table-in-an-array",
    ],
)
def test_an_error_names_the_line_and_column_of_the_value_at_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, culprit: str, message: str
) -> None:
    assert text.count(culprit) == 1, "the culprit says where the error must point"
    offset = text.index(culprit)
    line, column = text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)
    (tmp_path / "packager.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path)
    assert str(refused.value).startswith(f"packager.toml:{line}:{column}: {message}")


@pytest.mark.parametrize(
    "uri, problem",
    [
        ("s3://", "no bucket"),
        ("s3:///models", "no bucket"),
        ("s3:bucket/models", "no bucket"),
        ("s3://user@bucket/models", "'user@bucket' is not an S3 bucket name"),
        ("s3://bucket/models?versionId=1", "a ? or # has no place in it"),
        ("file:", "no directory"),
        ("file://", "no directory"),
        ("gs://bucket/models", "unknown scheme 'gs'"),
        ("models", "no scheme"),
    ],
)
def test_a_store_uri_that_names_no_store_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str, problem: str
) -> None:
    (tmp_path / "packager.toml").write_text(f'[stores]\nproduction = "{uri}"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path)
    assert str(refused.value) == (
        f"packager.toml:2:14: [stores] production {uri!r} is not a store URI ({problem}): "
        "give s3://bucket/prefix, file:///dir or file:dir"
    )
    with pytest.raises(UsageError, match=re.escape(f"({problem})")):
        open_store(uri, tmp_path)


def test_config_refuses_a_bucketless_s3_uri(run_packager: RunPackager, tmp_path: Path) -> None:
    (tmp_path / "packager.toml").write_text('[stores]\nstaging = "s3://"\n')
    shown = run_packager("config", cwd=tmp_path, env={"PACKAGER_STAGING_URI": ""})
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert "packager.toml:2:11: [stores] staging 's3://' is not a store URI (no bucket)" in shown.stderr


def test_a_byte_that_is_not_utf8_is_located(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "packager.toml").write_bytes(b'[stores]\nstaging = "caf\xc3\xa9 \xff"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^packager.toml:2:17: not UTF-8 text \(byte 26\)"):
        load_config(tmp_path)


def test_stores_and_production_branches_are_used(
    run_packager: RunPackager, model_repo: Path, tmp_path: Path
) -> None:
    (model_repo / "packager.toml").write_text(
        '[stores]\nstaging = "file:elsewhere/staging"\nproduction = "file:elsewhere/production"\n'
        'production_branches = ["release"]\n'
    )
    git(model_repo, "add", "-A")
    git(model_repo, "commit", "-qm", "our own stores")
    git(model_repo, "branch", "release")
    no_override = {"PACKAGER_STAGING_URI": "", "PACKAGER_PRODUCTION_URI": ""}
    released = run_packager("push", "fraud", "--branch", "release", "--json", cwd=model_repo, env=no_override)
    assert released.returncode == 0, released.stdout + released.stderr
    report = json.loads(released.stdout)["models"][0]
    assert (report["production"], report["uri"]) == (True, "file:elsewhere/production/fraud_1.tar.gz")
    assert (model_repo / "elsewhere" / "production" / "fraud_1.tar.gz").is_file()
    history = json.loads(run_packager("releases", "--json", cwd=model_repo, env=no_override).stdout)
    assert history["fraud"]["current"] == 1, "releases reads the configured production store"
    record(
        open_store(f"file://{model_repo / 'elsewhere' / 'production'}", None),
        "other",
        new_entry("publish", 3, key="other_3.tar.gz", sha256="0" * 64, commit="c" * 40),
    )
    listed = json.loads(run_packager("releases", "--json", cwd=model_repo, env=no_override).stdout)
    assert sorted(listed) == ["fraud", "other"]
    main = run_packager("push", "fraud", "--branch", "main", "--json", cwd=model_repo, env=no_override)
    assert main.returncode == 0, main.stdout + main.stderr
    staged = json.loads(main.stdout)["models"][0]
    assert staged["production"] is False, "main is not a production branch here"
    assert staged["uri"].startswith("file:elsewhere/staging/main/")


def test_a_configured_public_key_is_required_everywhere(
    run_packager: RunPackager, model_repo: Path, tmp_path: Path
) -> None:
    keys = model_repo / "keys"
    generated = run_packager(
        "keygen",
        "--private",
        str(tmp_path / "release.key"),
        "--public",
        str(keys / "release.pub"),
        cwd=model_repo,
    )
    assert generated.returncode == 0, generated.stderr
    built = run_packager("build", "fraud", "--json", cwd=model_repo)
    assert built.returncode == 0, built.stderr
    unsigned = json.loads(built.stdout)["artifacts"][0]["path"]
    (model_repo / "packager.toml").write_text('[signing]\npublic_key = "keys/release.pub"\n')
    verified = run_packager("verify", unsigned, cwd=model_repo)
    assert verified.returncode == 1 and "not signed (packager-manifest.sig is missing)" in verified.stdout
    replayed = run_packager("replay", "--artifact", unsigned, cwd=model_repo)
    assert replayed.returncode == 1 and "does not verify; nothing was run" in replayed.stdout
    served = run_packager("serve", "--artifact", unsigned, cwd=model_repo)
    assert served.returncode == 1 and "does not verify; nothing was run" in served.stderr
