"""Publishing, promotion, rollback and release history on the in-memory store: the release logic alone,
in seconds (the same paths through S3 and a real Triton are in test_releases.py)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from packager.artifacts import Artifact, build_artifact
from packager.modeldir import ModelDir, scaffold
from packager.release import (
    Destination,
    ImmutableKey,
    ReleaseError,
    current,
    history,
    new_entry,
    promote,
    publish,
    record,
    released_models,
    rollback,
    route,
)
from packager.release.stores import MemoryStore
from packager.settings import DEFAULT_RUNTIME, Runtime
from packager.validation import validate_model

COMMIT = "a" * 40
OTHER_COMMIT = "b" * 40


def _artifact(
    tmp_path: Path, version: int = 1, runtime: Runtime = DEFAULT_RUNTIME, tag: str = ""
) -> Artifact:
    """A real artifact of a scaffolded model (no environment: nothing is installed), in a directory of its own."""
    model_dir = tmp_path / f"models-{version}-{runtime.name}-{tag}"
    if not model_dir.exists():
        scaffold(model_dir, "fraud")
        model = ModelDir(model_dir / "fraud")
        (model.version_file).write_text(f"{version}\n")
        if tag:
            (model.path / "postprocess" / "1" / "model.py").write_text(
                (model.path / "postprocess" / "1" / "model.py").read_text() + f"# {tag}\n"
            )
    report = validate_model(ModelDir(model_dir / "fraud"))
    assert report.ok, report.diagnostics
    return build_artifact(report, runtime, None, tmp_path / f"dist-{version}-{runtime.name}-{tag}")


def _stage(staging: MemoryStore, artifact: Artifact, branch: str = "feature/x", commit: str = COMMIT) -> str:
    target = route(branch, commit, staging, production=False).destination(artifact.name, artifact.version)
    assert publish(artifact, target, commit).outcome == "uploaded"
    return target.key


def test_routes_put_branches_under_their_commit_and_production_at_the_root() -> None:
    store = MemoryStore()
    staged = route("feature/New Model", COMMIT, store, production=False).destination("fraud", 3)
    assert (staged.key, staged.production) == (f"feature-new-model/{COMMIT[:12]}/fraud_3.tar.gz", False)
    released = route("main", COMMIT, store, production=True).destination("fraud", 3)
    assert (released.key, released.production, released.uri) == (
        "fraud_3.tar.gz",
        True,
        "memory://store/fraud_3.tar.gz",
    )


def test_publish_uploads_once_then_recognises_itself_and_refuses_other_contents(tmp_path: Path) -> None:
    store = MemoryStore()
    artifact = _artifact(tmp_path)
    target = Destination(store, "fraud_1.tar.gz", production=True)
    assert publish(artifact, target, COMMIT).outcome == "uploaded"
    assert publish(artifact, target, COMMIT).outcome == "unchanged"
    head = store.head("fraud_1.tar.gz")
    assert head is not None and head.metadata["sha256"] == artifact.sha256
    assert head.metadata["commit"] == COMMIT and head.metadata["content-digest"] == artifact.content_digest

    rebuilt_elsewhere = _artifact(tmp_path, runtime=Runtime("other", "2.51.0", "3.11"))
    assert rebuilt_elsewhere.sha256 != artifact.sha256, "another manifest, other archive bytes"
    assert publish(rebuilt_elsewhere, target, COMMIT).outcome == "same contents"

    changed = _artifact(tmp_path, tag="v1.1")
    with pytest.raises(ImmutableKey, match=r"bump models/fraud/model_version.txt \(now 1\)"):
        publish(changed, target, COMMIT)
    store.download("fraud_1.tar.gz", tmp_path / "kept")
    assert (tmp_path / "kept").read_bytes() == artifact.path.read_bytes(), "nothing published is overwritten"


def test_concurrent_publishers_of_one_key_agree(tmp_path: Path) -> None:
    store = MemoryStore()
    artifact = _artifact(tmp_path)
    target = Destination(store, "fraud_1.tar.gz", production=True)
    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(lambda _: publish(artifact, target, COMMIT).outcome, range(8)))
    assert outcomes == ["unchanged"] * 7 + ["uploaded"]


def test_history_appends_and_current_follows_it_under_concurrent_writers() -> None:
    store = MemoryStore()
    entries = [
        new_entry("publish", version, f"m_{version}.tar.gz", f"{version:064x}", COMMIT)
        for version in range(1, 21)
    ]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda entry: record(store, "m", entry), entries))
    recorded = history(store, "m")
    assert sorted(entry.version for entry in recorded) == list(range(1, 21)), "no entry is lost"
    assert current(store, "m") == recorded[-1]
    pointer = store.read("_releases/m/current.json")
    assert pointer is not None and json.loads(pointer[0])["version"] == recorded[-1].version
    assert released_models(store) == ["m"] and history(store, "never") == []


def test_promote_copies_the_tested_bytes_and_records_them(tmp_path: Path) -> None:
    staging, production = MemoryStore("memory://staging"), MemoryStore("memory://production")
    artifact = _artifact(tmp_path)
    staged_key = _stage(staging, artifact)
    entry, source = promote(staging, production, "fraud", 1, COMMIT[:12], None)
    assert source == staged_key and entry is not None
    assert (entry.action, entry.version, entry.sha256, entry.commit) == (
        "promote",
        1,
        artifact.sha256,
        COMMIT,
    )
    production.download("fraud_1.tar.gz", tmp_path / "promoted")
    assert (tmp_path / "promoted").read_bytes() == artifact.path.read_bytes()
    assert current(production, "fraud") == entry
    again, _ = promote(staging, production, "fraud", 1, COMMIT, None)
    assert (
        again is None and len(history(production, "fraud")) == 1
    ), "promoting the same bytes twice is a no-op"


def test_promote_refuses_what_it_cannot_promote(tmp_path: Path) -> None:
    staging, production = MemoryStore("memory://staging"), MemoryStore("memory://production")
    artifact = _artifact(tmp_path)
    with pytest.raises(
        ReleaseError, match=f"no fraud_1.tar.gz from commit {COMMIT[:12]} in memory://staging"
    ):
        promote(staging, production, "fraud", 1, COMMIT, None)
    _stage(staging, artifact, branch="feature/x")
    _stage(staging, artifact, branch="feature/y")
    with pytest.raises(ReleaseError, match="staged under several branches"):
        promote(staging, production, "fraud", 1, COMMIT, None)

    tampered = MemoryStore("memory://tampered")
    key = _stage(tampered, artifact, commit=OTHER_COMMIT)
    flipped = bytearray(artifact.path.read_bytes())
    flipped[len(flipped) // 2] ^= 1
    (tmp_path / "flipped.tar.gz").write_bytes(bytes(flipped))
    corrupted = MemoryStore("memory://corrupted")
    corrupted.put_new(key, tmp_path / "flipped.tar.gz", dict(tampered.head(key).metadata))  # type: ignore[union-attr]
    with pytest.raises(ReleaseError, match="does not verify; not promoted"):
        promote(corrupted, production, "fraud", 1, OTHER_COMMIT, None)
    assert production.head("fraud_1.tar.gz") is None

    other_bytes = _artifact(tmp_path, tag="other")
    production.put_new("fraud_1.tar.gz", other_bytes.path, {"sha256": other_bytes.sha256})
    with pytest.raises(ImmutableKey, match="already published with other contents"):
        promote(tampered, production, "fraud", 1, OTHER_COMMIT, None)


def test_rollback_moves_current_back_and_grows_history(tmp_path: Path) -> None:
    staging, production = MemoryStore(), MemoryStore()
    with pytest.raises(ReleaseError, match="fraud has no release history"):
        rollback(production, "fraud", None)
    for version, commit in ((1, COMMIT), (2, OTHER_COMMIT)):
        _stage(staging, _artifact(tmp_path, version=version), commit=commit)
        promote(staging, production, "fraud", version, commit, None)
    assert current(production, "fraud").version == 2  # type: ignore[union-attr]
    back = rollback(production, "fraud", None)
    assert (back.action, back.version, back.commit, back.note) == ("rollback", 1, COMMIT, "from version 2")
    assert current(production, "fraud") == back and len(history(production, "fraud")) == 3
    with pytest.raises(Exception, match="fraud is already at version 1"):
        rollback(production, "fraud", 1)
    with pytest.raises(ReleaseError, match="fraud 7 was never published"):
        rollback(production, "fraud", 7)
    forward = rollback(production, "fraud", 2)
    assert forward.version == 2 and current(production, "fraud") == forward
