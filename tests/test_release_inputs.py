"""Hostile inputs to the release commands, through the CLI: key files that are not the key asked for, a
corrupted release history, and a rollback to a version that does not verify. Each is one clear line and
exit 1, never an internal error; nothing is published or recorded on the way. S3 is moto on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from packager.artifacts import Artifact, KeyUnusable, read_private_key, read_public_key, verify_artifact
from packager.release import Destination, new_entry, publish, record, route
from packager.release.stores import open_store
from tests.conftest import RunPackager, git, s3_client

GARBAGE_PEM = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
HISTORY = "models/_releases/fraud/history.json"


def _keygen(run_packager: RunPackager, repo: Path, name: str) -> tuple[Path, Path]:
    private, public = repo / "keys" / f"{name}.key", repo / "keys" / f"{name}.pub"
    made = run_packager("keygen", "--private", str(private), "--public", str(public), cwd=repo)
    assert made.returncode == 0, made.stderr
    return private, public


def _build(run_packager: RunPackager, repo: Path, *options: str) -> Artifact:
    built = run_packager("build", "fraud", "--json", *options, cwd=repo)
    assert built.returncode == 0, built.stdout + built.stderr
    artifact, problems = verify_artifact(Path(json.loads(built.stdout)["artifacts"][0]["path"]))
    assert not problems
    return artifact


def _refused(result: Any, *expected: str) -> str:
    """The one-line error of a refused command (exit 1, no internal error, no traceback)."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "internal error" not in output and "Traceback" not in output, output
    for text in expected:
        assert text in output, output
    return str(output)


def _pem(key: Any, private: bool, password: bytes | None = None) -> bytes:
    if not private:
        return bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    encryption = BestAvailableEncryption(password) if password else NoEncryption()
    return bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption))


@pytest.mark.parametrize(
    "contents, reader, reason",
    [
        (lambda: _pem(Ed25519PrivateKey.generate(), private=False), read_private_key, "it is a public key"),
        (lambda: _pem(Ed25519PrivateKey.generate(), True, b"pw"), read_private_key, "it is encrypted"),
        (lambda: _pem(Ed25519PrivateKey.generate(), True, b"pw"), read_public_key, "it is a private key"),
        (lambda: _pem(Ed25519PrivateKey.generate(), private=True), read_public_key, "it is a private key"),
        (
            lambda: _pem(rsa.generate_private_key(65537, 2048), True),
            read_private_key,
            "it is RSA, not Ed25519",
        ),
        (
            lambda: _pem(rsa.generate_private_key(65537, 2048), False),
            read_public_key,
            "it is RSA, not Ed25519",
        ),
        (lambda: GARBAGE_PEM.encode(), read_private_key, "no PEM key in it"),
        (lambda: bytes(range(256)), read_public_key, "no PEM public key in it"),
    ],
)
def test_a_key_file_that_is_not_the_key_asked_for_says_what_it_is(
    tmp_path: Path, contents: Callable[[], bytes], reader: Callable[[Path], object], reason: str
) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(contents())
    with pytest.raises(KeyUnusable, match=rf"^{path}: not an Ed25519 (private|public) key \({reason}"):
        reader(path)


def test_key_files_that_are_not_the_key_asked_for_are_refused(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str]
) -> None:
    private, public = _keygen(run_packager, model_repo, "release")
    garbage = model_repo / "keys" / "garbage.pem"
    garbage.write_text(GARBAGE_PEM)
    signed = _build(run_packager, model_repo, "--sign-key", str(private))

    as_private = "not an Ed25519 private key"
    _refused(
        run_packager("build", "fraud", "--sign-key", str(public), cwd=model_repo),
        f"{public}: {as_private} (it is a public key)",
    )
    _refused(
        run_packager("build", "fraud", "--sign-key", str(garbage), cwd=model_repo), f"{garbage}: {as_private}"
    )
    _refused(
        run_packager("build", "fraud", cwd=model_repo, env={"PACKAGER_SIGNING_KEY": str(garbage)}),
        f"{garbage}: {as_private} (no PEM key in it)",
    )
    as_public = "not an Ed25519 public key"
    for key in (garbage, private):
        _refused(
            run_packager("verify", str(signed.path), "--public-key", str(key), cwd=model_repo), as_public
        )
    _refused(
        run_packager("verify", str(signed.path), cwd=model_repo, env={"PACKAGER_VERIFY_KEY": str(private)}),
        f"{private}: {as_public} (it is a private key",
    )
    pushed = run_packager(
        "push", "fraud", "--branch", "main", "--sign-key", str(private), "--public-key", str(garbage),
        cwd=model_repo, env=s3,
    )  # fmt: skip
    _refused(pushed, f"{garbage}: {as_public}")
    (model_repo / "packager.toml").write_text('[signing]\npublic_key = "keys/garbage.pem"\n')
    _refused(run_packager("verify", str(signed.path), cwd=model_repo), f"{garbage}: {as_public}")
    _refused(run_packager("rollback", "fraud", cwd=model_repo, env=s3), f"{garbage}: {as_public}")


CORRUPTIONS = {  # what each command meets (every corruption on every reader: test_release_logic.py)
    "releases": b'{"model": "fraud", "entries": [{"action": "publish",, }]}\n',
    "rollback": b'{\n  "model": "fraud",\n  "entries": [\n    {\n      "action": "pub',
    "promote": b'{"model": "fraud", "entries": {"version": 1}}\n',
    "push": b'{"model": "fraud", "entries": [{"action": "publish", "version": "1"}]}\n',
}


def test_a_corrupted_release_history_is_refused_by_every_command(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str]
) -> None:
    commit = git(model_repo, "rev-parse", "HEAD")
    staged = _build(run_packager, model_repo)
    staging = open_store(s3["PACKAGER_STAGING_URI"], None)
    publish(
        staged, route("feature/fraud", commit, store=staging, production=False).destination(staged), commit
    )
    client, bucket = s3_client(s3["AWS_ENDPOINT_URL_S3"]), s3["PACKAGER_PRODUCTION_URI"].split("/")[2]
    where = f"{s3['PACKAGER_PRODUCTION_URI']}/_releases/fraud/history.json"
    for arguments in (
        ["releases"],
        ["rollback", "fraud", "--to", "1"],
        ["promote", "fraud", "1", "--from-commit", commit],
        ["push", "fraud", "--branch", "main"],
    ):
        corrupted = CORRUPTIONS[arguments[0]]
        client.put_object(Bucket=bucket, Key=HISTORY, Body=corrupted)
        output = _refused(run_packager(*arguments, cwd=model_repo, env=s3), where, "restore it from a backup")
        assert len([line for line in output.splitlines() if where in line]) == 1, output
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert [item["Key"] for item in listed] == [
            HISTORY
        ], "nothing published beside a history it cannot read"
        assert client.get_object(Bucket=bucket, Key=HISTORY)["Body"].read() == corrupted, "left as it was"


def test_rollback_verifies_the_version_it_goes_back_to(
    run_packager: RunPackager, model_repo: Path, s3: dict[str, str]
) -> None:
    private, public = _keygen(run_packager, model_repo, "release")
    other, _ = _keygen(run_packager, model_repo, "other")
    production = open_store(s3["PACKAGER_PRODUCTION_URI"], None)
    commit = git(model_repo, "rev-parse", "HEAD")
    for version, key in ((1, None), (2, other), (3, private), (4, private)):
        (model_repo / "models" / "fraud" / "model_version.txt").write_text(f"{version}\n")
        artifact = _build(run_packager, model_repo, *(["--sign-key", str(key)] if key else []))
        published = publish(artifact, Destination(production, f"fraud_{version}.tar.gz", True), commit)
        entry = new_entry(
            "publish", version, key=published.destination.key, sha256=artifact.sha256, commit=commit
        )
        record(production, "fraud", entry)
    (model_repo / "packager.toml").write_text('[signing]\npublic_key = "keys/release.pub"\n')

    unsigned = run_packager("rollback", "fraud", "--to", "1", cwd=model_repo, env=s3)
    _refused(unsigned, "fraud_1.tar.gz does not verify; not rolled back", "not signed")
    badly_signed = run_packager("rollback", "fraud", "--to", "2", cwd=model_repo, env=s3)
    _refused(badly_signed, "fraud_2.tar.gz does not verify; not rolled back", "signature does not verify")
    released = json.loads(run_packager("releases", "fraud", "--json", cwd=model_repo, env=s3).stdout)
    assert released["fraud"]["current"] == 4 and len(released["fraud"]["entries"]) == 4, "nothing recorded"

    signed = run_packager("rollback", "fraud", cwd=model_repo, env=s3)
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert "fraud is now at version 3 (from version 4)" in signed.stdout
