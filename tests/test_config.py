"""packager.toml: embedded defaults, every key parsed, type-checked and used (through the CLI), and every
mistake refused at its line and column with what is allowed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from packager.config import load_config
from packager.release import new_entry, record
from packager.release.stores import open_store
from packager.settings import DEFAULT_RUNTIME
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
        'launcher = "local"\nenv_builder = "conda"\ndescription = "an NGC image"\nnetwork = true\n'
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
        ("[packager]\nruntime = 'nope'\n", "2:1", "[packager] runtime 'nope' is not defined (known: local)"),
        ("[packager]\nruntime = 3\n", "2:1", "[packager] runtime must be a string, not int 3"),
        ("packager = 1\n", "1:1", "[packager] must be a table"),
        ("[runtime.x]\npython = '3.11'\n", "1:1", "[runtime.x] needs triton_version"),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = 2.51\n",
            "3:1",
            "[runtime.x] triton_version must be a string",
        ),
        (
            "[runtime.x]\npython = 'py3'\ntriton_version = '2.51.0'\n",
            "2:1",
            "[runtime.x] python is a CPython minor",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nimgae = 'nvcr.io/x'\n",
            "4:1",
            "[runtime.x] has unknown key 'imgae'",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nlauncher = 'container'\n",
            "4:1",
            "[runtime.x] a container runtime names its image, or a server_package to build one from",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nshm_size = 'lots'\n",
            "4:1",
            "[runtime.x] shm_size is a size such as",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nnetwork = 'yes'\n",
            "4:1",
            "[runtime.x] network must be true or false, not str 'yes'",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nlauncher = 'ssh'\n",
            "4:1",
            "launcher must be one of container, local, not 'ssh'",
        ),
        (
            "[runtime.x]\npython = '3.11'\ntriton_version = '2'\nenv_builder = 'pip'\n",
            "4:1",
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
            "6:3",
            "constraint 'numpy<<2' is not a requirement",
        ),
        (
            "[stores]\nstagign = 'file:x'\n",
            "2:1",
            "[stores] has unknown key 'stagign' (allowed: production, production_branches, staging)",
        ),
        ("[stores]\nstaging = 'ftp://host/x'\n", "2:1", "[stores] staging 'ftp://host/x' is not a store URI"),
        (
            "[stores]\nproduction_branches = 'release'\n",
            "2:1",
            "[stores] production_branches must be a list, not str 'release'",
        ),
        (
            "[stores]\nproduction_branches = []\n",
            "2:1",
            "[stores] production_branches is a non-empty list of branch names",
        ),
        (
            "[signing]\npublic_key = 'keys/none.pub'\n",
            "2:1",
            "[signing] public_key keys/none.pub: no such file",
        ),
        (
            "[signing]\nprivate_key = 'k'\n",
            "2:1",
            "[signing] has unknown key 'private_key' (allowed: public_key)",
        ),
        ("[endpoint]\ncold_start_budget = '30s'\n", "2:1", "[endpoint] cold_start_budget is seconds"),
        ("[endpoint]\ncold_start_budget = 0\n", "2:1", "[endpoint] cold_start_budget is seconds"),
        ("[endpoint]\nover_budget = 'ignore'\n", "2:1", '[endpoint] over_budget is "refuse" or "warn"'),
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
        new_entry("publish", 3, "other_3.tar.gz", "0" * 64, "c" * 40),
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
