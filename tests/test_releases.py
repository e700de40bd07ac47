"""push, promote, rollback, releases and verify end to end: real Triton replays, S3 over HTTP (moto on
loopback) and the embedded file store."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import RunPackager, git, s3_client


def _bucket(uri: str) -> str:
    return uri.split("/")[2]


def _keys(s3: dict[str, str], which: str) -> list[str]:
    listing = s3_client(s3["AWS_ENDPOINT_URL_S3"]).list_objects_v2(
        Bucket=_bucket(s3[f"PACKAGER_{which}_URI"])
    )
    return sorted(item["Key"] for item in listing.get("Contents", []))


def _outcome(stdout: str, model: str = "fraud") -> list[str]:
    """model, version, replay ("4/4 passed") and outcome of a model's row in push's table."""
    model_name, version, passed, _, outcome, *_ = next(
        line for line in stdout.splitlines() if line.startswith(model + " ")
    ).split()
    return [model_name, version, f"{passed} passed", outcome]


def _commit_change(repo: Path, path: str, text: str) -> str:
    (repo / path).write_text(text)
    git(repo, "commit", "-qam", f"change {path}")
    return git(repo, "rev-parse", "HEAD")


def test_branch_push_stages_per_commit_and_repush_is_a_no_op(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str]
) -> None:
    commit = git(model_repo, "rev-parse", "HEAD")
    first = run_packager("push", "fraud", "--branch", "feature/Fraud", cwd=model_repo, env=s3)
    assert first.returncode == 0, first.stdout + first.stderr
    key = f"models/feature-fraud/{commit[:12]}/fraud_1.tar.gz"
    assert _outcome(first.stdout) == ["fraud", "1", "4/4 passed", "uploaded"]
    assert _keys(s3, "STAGING") == [key] and _keys(s3, "PRODUCTION") == []
    again = run_packager("push", "fraud", "--branch", "feature/Fraud", cwd=model_repo, env=s3)
    assert again.returncode == 0 and _outcome(again.stdout) == ["fraud", "1", "4/4 passed", "unchanged"]


def test_main_publishes_to_production_and_other_bytes_are_refused(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str]
) -> None:
    published = run_packager("push", "fraud", "--branch", "main", "--json", cwd=model_repo, env=s3)
    assert published.returncode == 0, published.stdout + published.stderr
    report = json.loads(published.stdout)["models"][0]
    assert (report["outcome"], report["production"]) == ("uploaded", True)
    assert report["uri"] == s3["PACKAGER_PRODUCTION_URI"] + "/fraud_1.tar.gz"
    assert report["replay"]["passed"] is True

    _commit_change(
        model_repo,
        "models/fraud/postprocess/1/model.py",
        (model_repo / "models/fraud/postprocess/1/model.py").read_text() + "\n# v1.1\n",
    )
    refused = run_packager("push", "fraud", "--branch", "main", cwd=model_repo, env=s3)
    assert refused.returncode == 1
    assert "is already published with other contents" in refused.stdout
    assert "bump models/fraud/model_version.txt (now 1) and push again" in refused.stdout
    client = s3_client(s3["AWS_ENDPOINT_URL_S3"])
    head = client.head_object(Bucket=_bucket(s3["PACKAGER_PRODUCTION_URI"]), Key="models/fraud_1.tar.gz")
    assert head["Metadata"]["sha256"] == report["sha256"], "the published object is untouched"


def test_a_failing_replay_publishes_nothing(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str]
) -> None:
    case = model_repo / "models/fraud/tests/cases/midrange.json"
    document = json.loads(case.read_text())
    document["outputs"][0]["data"] = [[0.9]]
    _commit_change(model_repo, "models/fraud/tests/cases/midrange.json", json.dumps(document))
    result = run_packager("push", "fraud", "--branch", "feature/fraud", cwd=model_repo, env=s3)
    assert result.returncode == 1
    assert _outcome(result.stdout) == ["fraud", "1", "2/4 passed", "NOT"]
    assert "its replay failed: nothing was published" in result.stdout
    assert "SCORE: 1 of 1 values differ: [0, 0] expected 0.9" in result.stdout
    assert _keys(s3, "STAGING") == []


def test_promote_releases_rollback(run_packager: RunPackager, model_repo: Path, s3: dict[str, str]) -> None:
    tested = git(model_repo, "rev-parse", "HEAD")
    assert run_packager("push", "fraud", "--branch", "feature/fraud", cwd=model_repo, env=s3).returncode == 0
    promoted = run_packager("promote", "fraud", "1", "--from-commit", tested, cwd=model_repo, env=s3)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"promoted feature-fraud/{tested[:12]}/fraud_1.tar.gz -> " in promoted.stdout
    staged = s3_client(s3["AWS_ENDPOINT_URL_S3"]).head_object(
        Bucket=_bucket(s3["PACKAGER_STAGING_URI"]), Key=f"models/feature-fraud/{tested[:12]}/fraud_1.tar.gz"
    )
    production = s3_client(s3["AWS_ENDPOINT_URL_S3"]).head_object(
        Bucket=_bucket(s3["PACKAGER_PRODUCTION_URI"]), Key="models/fraud_1.tar.gz"
    )
    assert production["Metadata"]["sha256"] == staged["Metadata"]["sha256"], "exactly the tested bytes"
    again = run_packager("promote", "fraud", "1", "--from-commit", tested, cwd=model_repo, env=s3)
    assert again.returncode == 0 and "already in production and current; nothing to do" in again.stdout

    _commit_change(model_repo, "models/fraud/model_version.txt", "2\n")
    assert run_packager("push", "fraud", "--branch", "main", cwd=model_repo, env=s3).returncode == 0
    rolled = run_packager("rollback", "fraud", cwd=model_repo, env=s3)
    assert rolled.returncode == 0 and "fraud is now at version 1 (from version 2)" in rolled.stdout
    forward = run_packager("rollback", "fraud", "--to", "2", cwd=model_repo, env=s3)
    assert forward.returncode == 0, forward.stdout + forward.stderr

    listed = run_packager("releases", "fraud", "--json", cwd=model_repo, env=s3)
    released = json.loads(listed.stdout)["fraud"]
    entries = released["entries"]
    assert released["current"] == 2, "releases --json names the current version"
    assert [(entry["action"], entry["version"]) for entry in entries] == [
        ("promote", 1),
        ("publish", 2),
        ("rollback", 1),
        ("rollback", 2),
    ]
    assert entries[0]["commit"] == tested and entries[0]["actor"] and entries[0]["pipeline"] == "local"
    table = run_packager("releases", cwd=model_repo, env=s3).stdout
    assert re.search(r"^fraud\s+2\*\s+rollback", table, re.MULTILINE), table
    current = s3_client(s3["AWS_ENDPOINT_URL_S3"]).get_object(
        Bucket=_bucket(s3["PACKAGER_PRODUCTION_URI"]), Key="models/_releases/fraud/current.json"
    )
    assert json.loads(current["Body"].read())["version"] == 2


def test_promote_refuses_a_tampered_staged_artifact(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str], tmp_path: Path
) -> None:
    commit = git(model_repo, "rev-parse", "HEAD")
    assert run_packager("push", "fraud", "--branch", "feature/fraud", cwd=model_repo, env=s3).returncode == 0
    client, bucket = s3_client(s3["AWS_ENDPOINT_URL_S3"]), _bucket(s3["PACKAGER_STAGING_URI"])
    key = f"models/feature-fraud/{commit[:12]}/fraud_1.tar.gz"
    original = client.get_object(Bucket=bucket, Key=key)
    body = bytearray(original["Body"].read())
    body[-100] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body), Metadata=original["Metadata"])
    refused = run_packager("promote", "fraud", "1", "--from-commit", commit, cwd=model_repo, env=s3)
    assert refused.returncode == 1
    assert "does not verify; not promoted" in refused.stderr
    assert _keys(s3, "PRODUCTION") == []
    verified = run_packager("verify", f"s3://{bucket}/{key}", cwd=model_repo, env=s3)
    assert verified.returncode == 1 and "does NOT verify" in verified.stderr


def test_signatures_are_checked_on_promote(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str], tmp_path: Path
) -> None:
    for name in ("release", "other"):
        assert (
            run_packager(
                "keygen",
                "--private",
                str(tmp_path / f"{name}.key"),
                "--public",
                str(tmp_path / f"{name}.pub"),
                cwd=model_repo,
            ).returncode
            == 0
        )
    commit = git(model_repo, "rev-parse", "HEAD")
    signed = run_packager(
        "push",
        "fraud",
        "--branch",
        "feature/fraud",
        "--sign-key",
        str(tmp_path / "release.key"),
        cwd=model_repo,
        env=s3,
    )
    assert signed.returncode == 0, signed.stdout + signed.stderr
    wrong = run_packager(
        "promote",
        "fraud",
        "1",
        "--from-commit",
        commit,
        "--public-key",
        str(tmp_path / "other.pub"),
        cwd=model_repo,
        env=s3,
    )
    assert wrong.returncode == 1 and "the manifest signature does not verify" in wrong.stderr
    right = run_packager(
        "promote",
        "fraud",
        "1",
        "--from-commit",
        commit,
        "--public-key",
        str(tmp_path / "release.pub"),
        cwd=model_repo,
        env=s3,
    )
    assert right.returncode == 0, right.stdout + right.stderr
    verified = run_packager(
        "verify",
        f"s3://{_bucket(s3['PACKAGER_PRODUCTION_URI'])}/models/fraud_1.tar.gz",
        "--public-key",
        str(tmp_path / "release.pub"),
        cwd=model_repo,
        env=s3,
    )
    assert verified.returncode == 0 and "signature verified" in verified.stdout


def test_concurrent_pushers_of_one_version(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str]
) -> None:
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(
                lambda _: run_packager("push", "fraud", "--branch", "main", cwd=model_repo, env=s3), range(3)
            )
        )
    assert [result.returncode for result in results] == [0, 0, 0], [r.stdout + r.stderr for r in results]
    outcomes = sorted(_outcome(result.stdout)[3] for result in results)
    assert outcomes == ["unchanged", "unchanged", "uploaded"]
    listed = json.loads(run_packager("releases", "fraud", "--json", cwd=model_repo, env=s3).stdout)
    assert [entry["action"] for entry in listed["fraud"]["entries"]] == [
        "publish"
    ], "one publish, recorded once"


def test_embedded_file_store_by_default(run_packager: RunPackager, model_repo: Path) -> None:
    environment = {"PACKAGER_STAGING_URI": "", "PACKAGER_PRODUCTION_URI": ""}
    result = run_packager("push", "fraud", "--branch", "feature/fraud", cwd=model_repo, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    commit = git(model_repo, "rev-parse", "HEAD")
    staged = model_repo / "dist" / "stores" / "staging" / "feature-fraud" / commit[:12] / "fraud_1.tar.gz"
    assert staged.is_file()
    assert run_packager("verify", str(staged), cwd=model_repo).returncode == 0


def test_uncommitted_work_is_staged_under_its_own_keys_and_never_reaches_production(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str]
) -> None:
    commit = git(model_repo, "rev-parse", "HEAD")
    step = model_repo / "models" / "fraud" / "postprocess" / "1" / "model.py"
    keys = []
    for edit in ("# first edit\n", "# second edit\n"):
        step.write_text(step.read_text() + edit)
        pushed = run_packager("push", "fraud", "--branch", "feature/fraud", "--json", cwd=model_repo, env=s3)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        keys.append(json.loads(pushed.stdout)["models"][0]["uri"])
    assert keys[0] != keys[1], "a second edit does not collide with the first"
    assert all(f"/feature-fraud/{commit[:12]}-dirty-" in key for key in keys), keys
    refused = run_packager("push", "fraud", "--branch", "main", cwd=model_repo, env=s3)
    assert refused.returncode == 1 and "production publishes committed sources only" in refused.stdout
    promoted = run_packager("promote", "fraud", "1", "--from-commit", commit[:7], cwd=model_repo, env=s3)
    assert promoted.returncode == 1 and "only uncommitted builds of it are staged" in promoted.stderr
    assert _keys(s3, "PRODUCTION") == []


def test_a_file_git_ignores_never_reaches_production(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str]
) -> None:
    _commit_change(model_repo, ".gitignore", (model_repo / ".gitignore").read_text() + "*.local\n")
    (model_repo / "models" / "fraud" / "postprocess" / "1" / "settings.local").write_text("token = 'dev'\n")
    refused = run_packager("push", "fraud", "--branch", "main", cwd=model_repo, env=s3)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "its artifact would ship postprocess/1/settings.local, which git ignores" in refused.stdout
    assert _keys(s3, "PRODUCTION") == []


def test_push_checks_branch_and_commit_against_the_repository(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str]
) -> None:
    first = git(model_repo, "rev-parse", "HEAD")
    _commit_change(
        model_repo,
        "models/fraud/postprocess/1/model.py",
        "\n".join(
            (model_repo / "models/fraud/postprocess/1/model.py").read_text().splitlines() + ["# v1.1", ""]
        ),
    )
    stale = run_packager("push", "fraud", "--branch", "feature/x", "--commit", first, cwd=model_repo, env=s3)
    assert stale.returncode == 1 and f"differs from commit {first[:12]}" in stale.stdout
    unknown = run_packager("push", "fraud", "--commit", "0" * 40, cwd=model_repo, env=s3)
    assert unknown.returncode == 2 and "is not in the repository" in unknown.stderr
    git(model_repo, "checkout", "-q", "-b", "feature/y")
    off_main = _commit_change(model_repo, "models/fraud/model_version.txt", "2\n")
    refused = run_packager("push", "fraud", "--branch", "main", cwd=model_repo, env=s3)
    assert refused.returncode == 1 and f"{off_main[:12]} is not on main" in refused.stderr
    ci = {**s3, "GITHUB_REF_NAME": "feature/from-ci", "GITHUB_SHA": off_main}
    from_ci = run_packager("push", "fraud", "--json", cwd=model_repo, env=ci)
    assert from_ci.returncode == 0, from_ci.stdout + from_ci.stderr
    report = json.loads(from_ci.stdout)
    assert (report["branch"], report["commit"]) == ("feature/from-ci", off_main)
    assert report["models"][0]["uri"].endswith(f"/feature-from-ci/{off_main[:12]}/fraud_2.tar.gz")
