"""Publishing, promotion, rollback and release history on the in-memory store, with real artifacts of a
scaffolded model whose environment FakeEnvBuilder builds: the release logic alone, in seconds (the same
paths through S3 and a real Triton are in test_releases.py)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from packager.artifacts import Artifact, build_artifact
from packager.environments.fake import FakeEnvBuilder
from packager.modeldir import ModelDir
from packager.preflight import prepare
from packager.release import (
    Destination,
    ImmutableKey,
    OtherBytes,
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
from tests.conftest import git, new_model

COMMIT = "a" * 40
OTHER_COMMIT = "b" * 40


def _artifact(
    tmp_path: Path,
    lock: str,
    version: int = 1,
    runtime: Runtime = DEFAULT_RUNTIME,
    tag: str = "",
    committed: bool = True,
) -> Artifact:
    """A real artifact of a scaffolded model (its environment a fake's: nothing is installed), built in a
    git repository of its own (committed, unless asked otherwise)."""
    repo = tmp_path / f"repo-{version}-{runtime.name}-{tag}-{committed}"
    if not repo.exists():
        model = ModelDir(new_model(repo / "models", "fraud", lock))
        model.version_file.write_text(f"{version}\n")
        if tag:
            step = model.path / "postprocess" / "1" / "model.py"
            step.write_text(step.read_text() + f"# {tag}\n")
        git(repo, "init", "-q")
        if committed:
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", "model")
    report, environment = prepare(ModelDir(repo / "models" / "fraud"), runtime, FakeEnvBuilder())
    assert environment is not None and environment.metadata()["builder"] == "fake"
    return build_artifact(report, runtime, environment=environment, out_dir=repo / "dist")


def _stage(staging: MemoryStore, artifact: Artifact, branch: str = "feature/x", commit: str = COMMIT) -> str:
    target = route(branch, commit, store=staging, production=False).destination(artifact)
    assert publish(artifact, target, commit).outcome == "uploaded"
    return target.key


def _dirty(artifact: Artifact) -> Artifact:
    """The same artifact as if built from uncommitted sources (only the manifest says so)."""
    return Artifact(artifact.path, artifact.sha256, {**artifact.manifest, "source_dirty": True})


def test_routes_put_branches_under_their_commit_and_production_at_the_root(
    tmp_path: Path, scaffold_lock: str
) -> None:
    store = MemoryStore()
    artifact = _artifact(tmp_path, scaffold_lock, version=3)
    staged = route("feature/New Model", COMMIT, store=store, production=False).destination(artifact)
    assert (staged.key, staged.production) == (f"feature-new-model/{COMMIT[:12]}/fraud_3.tar.gz", False)
    released = route("main", COMMIT, store=store, production=True).destination(artifact)
    assert (released.key, released.production) == ("fraud_3.tar.gz", True)
    assert released.uri == "memory://store/fraud_3.tar.gz"
    dirty = route("feature/x", COMMIT, store=store, production=False).destination(_dirty(artifact))
    assert dirty.key == f"feature-x/{COMMIT[:12]}-dirty-{artifact.content_digest[:12]}/fraud_3.tar.gz"
    edited = _dirty(_artifact(tmp_path, scaffold_lock, version=3, tag="second edit"))
    assert (
        route("feature/x", COMMIT, store=store, production=False).destination(edited).key != dirty.key
    ), "each edit its own key"
    uncommitted = _artifact(tmp_path, scaffold_lock, tag="new", committed=False)
    assert (
        uncommitted.manifest["source_dirty"] is True
        and _artifact(tmp_path, scaffold_lock).manifest["source_dirty"] is False
    )


def test_publish_uploads_once_then_recognises_itself_and_refuses_other_contents(
    tmp_path: Path, scaffold_lock: str
) -> None:
    store = MemoryStore()
    artifact = _artifact(tmp_path, scaffold_lock)
    target = Destination(store, "fraud_1.tar.gz", production=True)
    assert publish(artifact, target, COMMIT).outcome == "uploaded"
    assert publish(artifact, target, COMMIT).outcome == "unchanged"
    head = store.head("fraud_1.tar.gz")
    assert head is not None and head.metadata["sha256"] == artifact.sha256
    assert head.metadata["commit"] == COMMIT and head.metadata["content-digest"] == artifact.content_digest

    elsewhere = Runtime("other", "2.51.0", "3.11", constraints=DEFAULT_RUNTIME.constraints)  # the same lock
    rebuilt_elsewhere = _artifact(tmp_path, scaffold_lock, runtime=elsewhere)
    assert rebuilt_elsewhere.sha256 != artifact.sha256, "another manifest, other archive bytes"
    assert publish(rebuilt_elsewhere, target, COMMIT).outcome == "same contents"

    changed = _artifact(tmp_path, scaffold_lock, tag="v1.1")
    with pytest.raises(ImmutableKey, match=r"bump models/fraud/model_version.txt \(now 1\)"):
        publish(changed, target, COMMIT)
    store.download("fraud_1.tar.gz", tmp_path / "kept")
    assert (tmp_path / "kept").read_bytes() == artifact.path.read_bytes(), "nothing published is overwritten"


def test_concurrent_publishers_of_one_key_agree(tmp_path: Path, scaffold_lock: str) -> None:
    store = MemoryStore()
    artifact = _artifact(tmp_path, scaffold_lock)
    target = Destination(store, "fraud_1.tar.gz", production=True)
    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(lambda _: publish(artifact, target, COMMIT).outcome, range(8)))
    assert outcomes == ["unchanged"] * 7 + ["uploaded"]


def test_history_appends_and_current_follows_it_under_concurrent_writers() -> None:
    store = MemoryStore()
    entries = [
        new_entry("publish", version, key=f"m_{version}.tar.gz", sha256=f"{version:064x}", commit=COMMIT)
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


ENTRY = {"action": "publish", "version": 1, "key": "m_1.tar.gz", "sha256": "a" * 64, "commit": COMMIT}
ENTRY.update(time="2026-01-01T00:00:00+00:00", actor="ci", pipeline="1")


@pytest.mark.parametrize(
    "document",
    [
        b'{"model": "m", "entries": [{"action": "publish",, }]}',  # invalid JSON
        json.dumps({"model": "m", "entries": [ENTRY]}).encode()[:70],  # truncated
        b"\xff\xfe{}",  # not UTF-8
        b"[]",
        b'{"model": "m", "entries": {"version": 1}}',
        b'{"model": "m", "entries": [1]}',
        json.dumps({"model": "m", "entries": [{**ENTRY, "version": "1"}]}).encode(),
        json.dumps({"model": "m", "entries": [{**ENTRY, "version": True}]}).encode(),
        json.dumps({"model": "m", "entries": [{**ENTRY, "extra": ""}]}).encode(),
        json.dumps({"model": "m", "entries": [{k: v for k, v in ENTRY.items() if k != "sha256"}]}).encode(),
    ],
)
def test_a_history_the_packager_did_not_write_is_refused_and_left_as_it_is(document: bytes) -> None:
    store = MemoryStore()
    store.write("_releases/m/history.json", document, None)
    unreadable = (
        r"^memory://store/_releases/m/history.json(:\d+:\d+)?: .+: not a release history the packager"
    )
    with pytest.raises(ReleaseError, match=unreadable):
        history(store, "m")
    with pytest.raises(ReleaseError, match=unreadable):
        record(store, "m", new_entry("publish", 2, key="m_2.tar.gz", sha256="b" * 64, commit=COMMIT))
    assert store.read("_releases/m/history.json")[0] == document  # type: ignore[index]


def test_a_history_binds_each_key_to_one_sha256_and_rebuilds_an_unreadable_current() -> None:
    store = MemoryStore()
    store.write("_releases/m/current.json", b'{"vers', None)
    assert (
        record(store, "m", new_entry("publish", 1, key="m_1.tar.gz", sha256="a" * 64, commit=COMMIT)) is True
    )
    pointer = store.read("_releases/m/current.json")
    assert (
        pointer is not None and json.loads(pointer[0])["version"] == 1
    ), "current.json is derived: rewritten"
    with pytest.raises(OtherBytes, match=r"records m_1.tar.gz as sha256 aaaaaaaaaaaa \(commit aaaaaaaaaaaa"):
        record(store, "m", new_entry("rollback", 1, key="m_1.tar.gz", sha256="b" * 64, commit=OTHER_COMMIT))
    assert (
        record(
            store,
            "m",
            new_entry("publish", 1, key="m_1.tar.gz", sha256="a" * 64, commit=COMMIT),
            unless_known=True,
        )
        is False
    )
    assert len(history(store, "m")) == 1


def test_promote_copies_the_tested_bytes_and_records_them(tmp_path: Path, scaffold_lock: str) -> None:
    staging, production = MemoryStore("memory://staging"), MemoryStore("memory://production")
    artifact = _artifact(tmp_path, scaffold_lock)
    staged_key = _stage(staging, artifact)
    promotion = promote(
        staging, production, model="fraud", version=1, from_commit=COMMIT[:7], public_key=None
    )
    entry = promotion.entry
    assert promotion.source.key == staged_key and entry is not None and promotion.outcome == "promoted"
    assert promotion.source.uri == f"memory://staging/{staged_key}"
    assert promotion.destination.uri == "memory://production/fraud_1.tar.gz"
    assert (entry.action, entry.version, entry.sha256, entry.commit) == (
        "promote",
        1,
        artifact.sha256,
        COMMIT,
    )
    production.download("fraud_1.tar.gz", tmp_path / "promoted")
    assert (tmp_path / "promoted").read_bytes() == artifact.path.read_bytes()
    assert current(production, "fraud") == entry
    again = promote(staging, production, model="fraud", version=1, from_commit=COMMIT, public_key=None)
    assert (
        again.entry is None and len(history(production, "fraud")) == 1
    ), "promoting the same bytes twice is a no-op"
    assert again.outcome == "already current" and again.destination == promotion.destination


def test_promote_refuses_what_it_cannot_promote(tmp_path: Path, scaffold_lock: str) -> None:
    staging, production = MemoryStore("memory://staging"), MemoryStore("memory://production")
    artifact = _artifact(tmp_path, scaffold_lock)
    with pytest.raises(ReleaseError, match=f"no fraud_1.tar.gz from commit {COMMIT} in memory://staging"):
        promote(staging, production, model="fraud", version=1, from_commit=COMMIT, public_key=None)
    _stage(staging, artifact, branch="feature/x")
    _stage(staging, artifact, branch="feature/y")
    with pytest.raises(
        ReleaseError,
        match=r"staged under several branches \(feature-x, feature-y\): choose one with --branch",
    ):
        promote(staging, production, model="fraud", version=1, from_commit=COMMIT, public_key=None)
    chosen = promote(
        staging,
        MemoryStore(),
        model="fraud",
        version=1,
        from_commit=COMMIT,
        public_key=None,
        branch="feature/y",
    )
    assert chosen.entry is not None and chosen.source.key.startswith("feature-y/")
    with pytest.raises(Exception, match="not a commit"):
        promote(staging, production, model="fraud", version=1, from_commit="abc", public_key=None)
    _stage(staging, artifact, commit="a" * 7 + "b" * 33)
    with pytest.raises(ReleaseError, match="commit prefix aaaaaaa is ambiguous"):
        promote(staging, production, model="fraud", version=1, from_commit="aaaaaaa", public_key=None)

    tampered = MemoryStore("memory://tampered")
    key = _stage(tampered, artifact, commit=OTHER_COMMIT)
    flipped = bytearray(artifact.path.read_bytes())
    flipped[len(flipped) // 2] ^= 1
    (tmp_path / "flipped.tar.gz").write_bytes(bytes(flipped))
    corrupted = MemoryStore("memory://corrupted")
    corrupted.put_new(key, tmp_path / "flipped.tar.gz", dict(tampered.head(key).metadata))  # type: ignore[union-attr]
    with pytest.raises(ReleaseError, match="does not verify; not promoted"):
        promote(corrupted, production, model="fraud", version=1, from_commit=OTHER_COMMIT, public_key=None)
    assert production.head("fraud_1.tar.gz") is None

    dirty_staging = MemoryStore("memory://dirty")
    _stage(dirty_staging, _dirty(artifact))
    with pytest.raises(
        ReleaseError, match="only uncommitted builds of it are staged, which are never promoted"
    ):
        promote(dirty_staging, MemoryStore(), model="fraud", version=1, from_commit=COMMIT, public_key=None)
    forged = MemoryStore("memory://forged")  # a dirty build copied under a clean key by hand
    forged.put_new(
        f"feature-x/{COMMIT[:12]}/fraud_1.tar.gz",
        _artifact(tmp_path, scaffold_lock, tag="dirty", committed=False).path,
        {},
    )
    with pytest.raises(ReleaseError, match="built from uncommitted sources"):
        promote(forged, MemoryStore(), model="fraud", version=1, from_commit=COMMIT, public_key=None)

    other_bytes = _artifact(tmp_path, scaffold_lock, tag="other")
    production.put_new("fraud_1.tar.gz", other_bytes.path, {"sha256": other_bytes.sha256})
    with pytest.raises(ImmutableKey, match="already published with other contents"):
        promote(tampered, production, model="fraud", version=1, from_commit=OTHER_COMMIT, public_key=None)


def test_rollback_moves_current_back_and_grows_history(tmp_path: Path, scaffold_lock: str) -> None:
    staging, production = MemoryStore(), MemoryStore()
    with pytest.raises(ReleaseError, match="fraud has no release history"):
        rollback(production, "fraud", to_version=None)
    for version, commit in ((1, COMMIT), (2, OTHER_COMMIT)):
        _stage(staging, _artifact(tmp_path, scaffold_lock, version=version), commit=commit)
        promote(staging, production, model="fraud", version=version, from_commit=commit, public_key=None)
    assert current(production, "fraud").version == 2  # type: ignore[union-attr]
    back = rollback(production, "fraud", to_version=None)
    assert (back.action, back.version, back.commit, back.note) == ("rollback", 1, COMMIT, "from version 2")
    assert current(production, "fraud") == back and len(history(production, "fraud")) == 3
    with pytest.raises(Exception, match="fraud is already at version 1"):
        rollback(production, "fraud", to_version=1)
    with pytest.raises(ReleaseError, match="fraud 7 was never published"):
        rollback(production, "fraud", to_version=7)
    forward = rollback(production, "fraud", to_version=2)
    assert forward.version == 2 and current(production, "fraud") == forward

    stored = production.head("fraud_1.tar.gz")
    assert stored is not None
    production.remove(stored)  # version 1's object now holds other bytes than the history records
    other = _artifact(tmp_path, scaffold_lock, tag="other")
    publish(other, Destination(production, "fraud_1.tar.gz", production=True), COMMIT)
    with pytest.raises(
        ReleaseError, match=rf"does not verify; not rolled back:\n.*{stored.metadata['sha256']} was rec"
    ):
        rollback(production, "fraud", to_version=1)
    assert current(production, "fraud") == forward


def test_a_publish_whose_record_was_lost_is_repaired_and_promote_makes_a_published_version_current(
    tmp_path: Path,
    scaffold_lock: str,
) -> None:
    production, staging = MemoryStore(), MemoryStore()
    one, two = _artifact(tmp_path, scaffold_lock, version=1), _artifact(tmp_path, scaffold_lock, version=2)
    for artifact in (one, two):
        key = f"fraud_{artifact.version}.tar.gz"
        publish(artifact, Destination(production, key, production=True), COMMIT)  # its record never written
        entry = new_entry("publish", artifact.version, key=key, sha256=artifact.sha256, commit=COMMIT)
        assert record(production, "fraud", entry, unless_known=True) is True
        assert record(production, "fraud", entry, unless_known=True) is False, "the next run finds it known"
    assert [entry.version for entry in history(production, "fraud")] == [1, 2]
    rollback(production, "fraud", to_version=1)
    _stage(staging, two, commit=OTHER_COMMIT)
    promoted = promote(
        staging, production, model="fraud", version=2, from_commit=OTHER_COMMIT, public_key=None
    ).entry
    assert (
        promoted is not None and current(production, "fraud") == promoted
    ), "in production, not current: now current"
    pointer = production.read("_releases/fraud/current.json")
    assert pointer is not None and json.loads(pointer[0])["version"] == 2
