"""Artifacts: layout for SageMaker MME, byte-reproducibility, manifest, signatures, verify, unsafe input."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from packager.archives import file_digest
from packager.artifacts import (
    MANIFEST,
    SIGNATURE,
    ArtifactError,
    build_artifact,
    generate_keys,
    verified,
    verify_artifact,
)
from packager.environments import Environment, ensure_environment
from packager.environments.venv import VenvBuilder
from packager.modeldir import LibraryError, ModelDir
from packager.settings import DEFAULT_RUNTIME
from packager.validation import ModelReport, validate_model
from tests.conftest import git


@pytest.fixture
def fraud(model_repo: Path) -> tuple[ModelReport, Environment]:
    model = ModelDir(model_repo / "models" / "fraud")
    (model.path / "preprocess" / "1" / "weights.bin").write_bytes(b"\x01" * 1000)  # stands for real weights
    (model.path / "preprocess" / "1" / "weights.bin.dvc").write_text(
        "outs:\n- md5: 0c0ad6d6a2d4c7b5e7c2b4e3f1a9d8c7\n  path: weights.bin\n"
    )
    (model.path / "preprocess" / "1" / "__pycache__").mkdir()
    (model.path / "preprocess" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"stale")
    report = validate_model(model)
    assert report.ok, report.diagnostics
    return report, ensure_environment(model, DEFAULT_RUNTIME, VenvBuilder())


def test_layout_manifest_and_hard_links(fraud: tuple[ModelReport, Environment], tmp_path: Path) -> None:
    report, environment = fraud
    artifact = build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "dist")
    assert artifact.path.name == "fraud_1.tar.gz"
    with tarfile.open(artifact.path) as tar:
        members = {member.name: member for member in tar.getmembers()}
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    assert list(members)[0] == MANIFEST
    assert {name.split("/")[0] for name in members} == {MANIFEST, "fraud", "preprocess", "postprocess"}
    assert "preprocess/1/weights.bin" in members, "weights ship"
    assert not [name for name in members if name.endswith((".dvc", ".pyc")) or "__pycache__" in name]
    first, second = members["postprocess/python_env.tar.gz"], members["preprocess/python_env.tar.gz"]
    assert first.isfile() and first.size == environment.tarball.stat().st_size
    assert (
        second.islnk() and second.linkname == "postprocess/python_env.tar.gz"
    ), "identical files are stored once"
    assert manifest["model"] == "fraud" and manifest["version"] == 1 and manifest["top_model"] == "fraud"
    assert manifest["env_key"] == environment.key
    assert manifest["runtime"] == {"name": "local", "triton_version": "2.51.0", "python": "3.11"}
    assert manifest["toolkit"].startswith("packager ")
    assert len(manifest["source_commit"]) == 40 and manifest["source_dirty"] is True  # weights.bin is new
    assert manifest["files"]["preprocess/python_env.tar.gz"]["sha256"] == file_digest(environment.tarball)
    assert verify_artifact(artifact.path)[1] == []


def test_directories_without_files_are_left_out(
    fraud: tuple[ModelReport, Environment], tmp_path: Path
) -> None:
    """Verification admits only directories that hold a listed file, so the build writes no other."""
    report, environment = fraud
    (report.model.path / "preprocess" / "1" / "empty").mkdir()
    (report.model.path / "preprocess" / "1" / "cache_only" / "__pycache__").mkdir(parents=True)
    (report.model.path / "preprocess" / "1" / "cache_only" / "__pycache__" / "x.cpython-311.pyc").write_bytes(
        b""
    )
    artifact = build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "dist")
    with tarfile.open(artifact.path) as tar:
        names = tar.getnames()
    assert "preprocess/1" in names
    assert not [name for name in names if name.startswith(("preprocess/1/empty", "preprocess/1/cache_only"))]
    assert verify_artifact(artifact.path)[1] == []


def test_two_builds_are_byte_identical(fraud: tuple[ModelReport, Environment], tmp_path: Path) -> None:
    report, environment = fraud
    one = build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "one")
    (report.model.path / "preprocess" / "1" / "model.py").touch()  # a newer mtime changes nothing
    two = build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "two")
    assert one.sha256 == two.sha256 == file_digest(two.path)


def test_a_weight_rewritten_during_the_build_leaves_no_artifact(
    fraud: tuple[ModelReport, Environment], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest lists each file's digest before the archive is written; a file rewritten in between (a
    concurrent `dvc pull`) would ship bytes the manifest does not list, so the build fails instead."""
    report, environment = fraud
    weights = report.model.path / "preprocess" / "1" / "weights.bin"

    def digest_then_rewrite(path: Path, algorithm: str = "sha256") -> str:
        digest = file_digest(path, algorithm)
        if path == weights:
            weights.write_bytes(b"\x02" * 1000)
        return digest

    monkeypatch.setattr("packager.artifacts.build.file_digest", digest_then_rewrite)
    with pytest.raises(
        ArtifactError, match="fraud_1.tar.gz: preprocess/1/weights.bin changed while it was built"
    ):
        build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "dist")
    assert list((tmp_path / "dist").iterdir()) == []


def _rewrite(archive: Path, out: Path, change: dict[str, bytes]) -> Path:
    """Copy an archive, replacing some members' bytes but keeping the manifest (a tampered artifact)."""
    with tarfile.open(archive) as source, tarfile.open(out, "w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name in change:
                data = change[member.name]
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


def test_tampered_artifact_fails_verify(fraud: tuple[ModelReport, Environment], tmp_path: Path) -> None:
    report, environment = fraud
    artifact = build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "dist")
    tampered = _rewrite(
        artifact.path, tmp_path / "tampered.tar.gz", {"preprocess/1/model.py": b"import os\n"}
    )
    assert verify_artifact(tampered)[1] == ["preprocess/1/model.py: sha256 differs from the manifest"]
    assert verify_artifact(artifact.path, expected_sha256="0" * 64)[1][0].startswith("archive sha256 is ")


def test_nothing_unverified_is_unpacked_for_serving(
    fraud: tuple[ModelReport, Environment], tmp_path: Path
) -> None:
    report, environment = fraud
    artifact = build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "dist")
    with verified(artifact.path) as (checked, root):
        assert checked.sha256 == artifact.sha256 and checked.manifest == artifact.manifest
        assert (root / "preprocess" / "1" / "model.py").read_bytes() == (
            report.model.path / "preprocess" / "1" / "model.py"
        ).read_bytes()
        assert (root / "preprocess" / "python_env.tar.gz").stat().st_ino == (
            root / "postprocess" / "python_env.tar.gz"
        ).stat().st_ino, "hard-linked members stay one file"
    tampered = _rewrite(
        artifact.path, tmp_path / "tampered.tar.gz", {"postprocess/1/model.py": b"import os\n"}
    )
    with pytest.raises(
        ArtifactError,
        match=r"tampered.tar.gz does not verify; nothing was run:\n  postprocess/1/model.py: sha256",
    ):
        with verified(tampered):
            raise AssertionError("a tampered artifact was unpacked for serving")
    flipped = bytearray(artifact.path.read_bytes())
    flipped[len(flipped) // 2] ^= 0x10  # one bit: a file's bytes change, or the stream breaks
    (tmp_path / "flipped.tar.gz").write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match=r"flipped.tar.gz does not verify; nothing was run:"):
        with verified(tmp_path / "flipped.tar.gz"):
            raise AssertionError("a corrupted artifact was unpacked for serving")


def test_signed_manifest_verifies_only_with_its_key(
    fraud: tuple[ModelReport, Environment], tmp_path: Path
) -> None:
    report, environment = fraud
    generate_keys(tmp_path / "release.key", tmp_path / "release.pub")
    generate_keys(tmp_path / "other.key", tmp_path / "other.pub")
    assert oct((tmp_path / "release.key").stat().st_mode & 0o777) == "0o600"
    signed = build_artifact(
        report,
        DEFAULT_RUNTIME,
        environment=environment,
        out_dir=tmp_path / "signed",
        signing_key=tmp_path / "release.key",
    )
    again = build_artifact(
        report,
        DEFAULT_RUNTIME,
        environment=environment,
        out_dir=tmp_path / "again",
        signing_key=tmp_path / "release.key",
    )
    assert signed.sha256 == again.sha256, "Ed25519 signatures are deterministic: signed builds reproduce"
    assert verify_artifact(signed.path, tmp_path / "release.pub")[1] == []
    assert verify_artifact(signed.path, tmp_path / "other.pub")[1] == [
        f"the manifest signature does not verify with {tmp_path / 'other.pub'}"
    ]
    unsigned = build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "unsigned")
    assert verify_artifact(unsigned.path, tmp_path / "release.pub")[1] == [
        f"not signed ({SIGNATURE} is missing), but a public key is configured"
    ]


@pytest.mark.parametrize(
    "name, kind, linkname",
    [
        ("../escape.txt", tarfile.REGTYPE, ""),
        ("/etc/cron.d/evil", tarfile.REGTYPE, ""),
        ("fraud/link", tarfile.SYMTYPE, "/etc/passwd"),
    ],
)
def test_unsafe_tarballs_are_refused(tmp_path: Path, name: str, kind: bytes, linkname: str) -> None:
    archive = tmp_path / "evil.tar.gz"
    manifest = json.dumps({"files": {name: {"sha256": "0" * 64, "size": 0}}}).encode()
    with tarfile.open(archive, "w:gz") as tar:
        head = tarfile.TarInfo(MANIFEST)
        head.size = len(manifest)
        tar.addfile(head, io.BytesIO(manifest))
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, linkname, 0
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ArtifactError, match="unsafe archive: member .* (would be written outside|links to)"):
        with verified(archive):
            pass
    assert not (tmp_path / "escape.txt").exists()


def test_an_archive_without_a_manifest_is_not_an_artifact(tmp_path: Path) -> None:
    archive = tmp_path / "foreign.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("model/config.pbtxt")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(
        ArtifactError,
        match="the first member is 'model/config.pbtxt', not packager-manifest.json; not an artifact built by",
    ):
        verify_artifact(archive)


def test_shared_libraries_a_step_imports_are_packed_beside_it(
    fraud: tuple[ModelReport, Environment], tmp_path: Path
) -> None:
    report, environment = fraud
    root = report.model.path.parent.parent
    (root / "libs" / "fraudkit").mkdir(parents=True)
    (root / "libs" / "fraudkit" / "__init__.py").write_text("")
    (root / "libs" / "fraudkit" / "scale.py").write_text("import helpers\n")
    (root / "libs" / "helpers.py").write_text("import json\n")
    (root / "libs" / "unused.py").write_text("")
    step = report.model.path / "preprocess" / "1" / "model.py"
    step.write_text("from fraudkit.scale import *  # noqa\n" + step.read_text())
    artifact = build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "dist")
    with tarfile.open(artifact.path) as tar:
        names = set(tar.getnames())
    shared = {name for name in names if "fraudkit" in name or "helpers" in name or "unused" in name}
    assert shared == {
        "preprocess/1/fraudkit",
        "preprocess/1/fraudkit/__init__.py",
        "preprocess/1/fraudkit/scale.py",
        "preprocess/1/helpers.py",
    }, "what the step imports, through each other; nothing for the steps that do not"

    (report.model.path / "preprocess" / "1" / "helpers.py").write_text("")
    with pytest.raises(LibraryError, match="preprocess/1/helpers.py: also in .*libs; a step's own file"):
        build_artifact(report, DEFAULT_RUNTIME, environment=environment, out_dir=tmp_path / "again")


def test_a_shipped_file_git_ignores_makes_the_sources_dirty_unless_its_dvc_pointer_vouches_for_it(
    model_repo: Path, tmp_path: Path
) -> None:
    model = ModelDir(model_repo / "models" / "fraud")
    step = model.path / "preprocess" / "1"
    weights = step / "weights.bin"
    weights.write_bytes(b"\x01" * 1000)
    (step / "weights.bin.dvc").write_text(
        f"outs:\n- md5: {file_digest(weights, 'md5')}\n  path: weights.bin\n"
    )
    (step / ".gitignore").write_text("/weights.bin\n")  # what `dvc add` writes
    (model_repo / ".gitignore").write_text((model_repo / ".gitignore").read_text() + "*.local\n")
    (step / "defaults.txt").symlink_to("../../defaults.local")  # a committed link to a file git ignores
    git(model_repo, "add", "-A")
    git(model_repo, "commit", "-q", "-m", "weights and a link")
    environment = ensure_environment(model, DEFAULT_RUNTIME, VenvBuilder())

    def provenance() -> tuple[object, object]:
        manifest = build_artifact(
            validate_model(model),
            DEFAULT_RUNTIME,
            environment=environment,
            out_dir=tmp_path,
            signing_key=None,
            repository=model_repo,
        ).manifest
        return manifest["source_dirty"], manifest["source_ignored"]

    (model.path / "defaults.local").write_text("threshold = 0.5\n")
    assert provenance() == (True, ["preprocess/1/defaults.txt"]), "the bytes behind a committed link"
    (step / "defaults.txt").unlink()
    assert provenance() == (True, []), "(a deleted file is an uncommitted change)"
    git(model_repo, "commit", "-q", "-am", "no link")
    assert provenance() == (False, []), "weights that match their committed pointer ship clean"
    (step / "settings.local").write_text("token = 'dev'\n")
    (model.path / "postprocess" / "1" / "__pycache__").mkdir()
    (model.path / "postprocess" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"")
    assert provenance() == (True, ["preprocess/1/settings.local"]), "what ships, not what is left out"
    (step / "settings.local").unlink()
    weights.write_bytes(b"\x02" * 1000)
    assert provenance() == (True, ["preprocess/1/weights.bin"]), "a weight that is not what its pointer says"


def test_shared_code_counts_in_the_artifacts_provenance(model_repo: Path, tmp_path: Path) -> None:
    (model_repo / "libs" / "fraudkit").mkdir(parents=True)
    (model_repo / "libs" / "fraudkit" / "__init__.py").write_text("SCALE = 1\n")
    step = model_repo / "models" / "fraud" / "preprocess" / "1" / "model.py"
    step.write_text("import fraudkit\n" + step.read_text())
    git(model_repo, "add", "-A")
    git(model_repo, "commit", "-q", "-m", "fraudkit")
    model = ModelDir(model_repo / "models" / "fraud")
    environment = ensure_environment(model, DEFAULT_RUNTIME, VenvBuilder())

    def manifest() -> dict[str, object]:
        return build_artifact(
            validate_model(model),
            DEFAULT_RUNTIME,
            environment=environment,
            out_dir=tmp_path,
            signing_key=None,
            repository=model_repo,
        ).manifest

    committed = manifest()
    assert committed["source_dirty"] is False and committed["source_commit"] == git(
        model_repo, "rev-parse", "HEAD"
    )
    (model_repo / "libs" / "fraudkit" / "__init__.py").write_text("SCALE = 2\n")
    assert manifest()["source_dirty"] is True, "an uncommitted change to shared code it packs"
    git(model_repo, "commit", "-q", "-am", "fraudkit: scale 2")
    assert manifest()["source_commit"] == git(
        model_repo, "rev-parse", "HEAD"
    ), "the last commit of any source"
