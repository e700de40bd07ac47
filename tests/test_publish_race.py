"""Two production pushes of one model version with different bytes, raced deterministically against S3 over
HTTP (moto on loopback): exactly one is `uploaded`, the other is refused, and the release history names
the bytes the key holds.

Real S3 applies `If-None-Match: *` atomically, so the second create fails; the race is forced here as a
store that ignores the condition lets it happen (as moto's threaded server, or an S3-compatible server
without conditional writes, does): the second pusher passed its HEAD check before the first created, and
its create replaces the first's object, at each point where that can land."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from packager.archives import file_digest
from packager.artifacts import Artifact
from packager.release import (
    ImmutableKey,
    Published,
    Route,
    history,
    publish,
    publish_release,
    record_release,
    route,
)
from packager.release.stores import Store, open_store
from packager.release.stores import s3 as s3_backend
from tests.conftest import s3_client

FIRST, SECOND = "a" * 40, "b" * 40
MIB = 1024 * 1024
ORDERS = [
    "the first records first",
    "the second records first",
    "the first finished before the second created",
]


def _artifact(tmp_path: Path, name: str, size: int) -> Artifact:
    path = tmp_path / name / "m_1.tar.gz"
    path.parent.mkdir()
    path.write_bytes(os.urandom(size))
    manifest = {"model": "m", "version": 1, "content_digest": name * 64, "source_dirty": False}
    return Artifact(path, file_digest(path), manifest)


def _ignoring_if_none_match(store: Store) -> None:
    """Make `store` create artifacts as a store that ignores If-None-Match does: by replacing what is there."""

    def drop(params: dict[str, Any], **kwargs: Any) -> None:
        if params["Key"].endswith(".tar.gz"):
            params.pop("IfNoneMatch", None)

    for operation in ("PutObject", "CompleteMultipartUpload"):
        store.client.meta.events.register(f"before-parameter-build.s3.{operation}", drop)  # type: ignore[attr-defined]


def _settle(artifact: Artifact, published: Published, where: Route, outcomes: dict[str, str]) -> None:
    try:
        record_release(artifact, published, where)
        outcomes[where.commit] = published.outcome
    except ImmutableKey as refused:
        outcomes[where.commit] = f"refused: {refused}"


@pytest.fixture(params=["single PUT", "multipart"])
def size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    if request.param == "single PUT":
        return 64 * 1024
    monkeypatch.setattr(s3_backend, "PART_SIZE", 5 * MIB)  # S3's smallest part: two parts, not 17 MiB
    return 5 * MIB + 4096


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
@pytest.mark.parametrize("order", ORDERS)
def test_of_two_racing_production_pushes_exactly_one_wins(
    s3: dict[str, str], tmp_path: Path, size: int, order: str, versioned: bool
) -> None:
    uri = s3["PACKAGER_PRODUCTION_URI"]
    if versioned:
        s3_client(s3["AWS_ENDPOINT_URL_S3"]).put_bucket_versioning(
            Bucket=uri.split("/")[2], VersioningConfiguration={"Status": "Enabled"}
        )
    first, second = _artifact(tmp_path, "first", size), _artifact(tmp_path, "second", size)
    first_route = route("main", FIRST, store=open_store(uri, None), production=True)
    second_route = route("main", SECOND, store=open_store(uri, None), production=True)
    _ignoring_if_none_match(second_route.store)
    outcomes: dict[str, str] = {}
    create_second = second_route.store.put_new

    def after_the_first(key: str, source: Path, metadata: dict[str, str]) -> None:
        """The second pusher's create, sent after its HEAD found nothing, lands after the first's."""
        published = publish(first, first_route.destination(first), FIRST)
        assert published.outcome == "uploaded", "the first created the key and read it back"
        if order == ORDERS[2]:
            _settle(first, published, first_route, outcomes)
            assert outcomes[FIRST] == "uploaded"
        else:
            first_published.append(published)
        create_second(key, source, metadata)

    first_published: list[Published] = []
    second_route.store.put_new = after_the_first  # type: ignore[method-assign]
    second_published = publish(second, second_route.destination(second), SECOND)
    assert (
        second_published.outcome == "uploaded"
    ), "its create replaced the first's object, read back as its own"
    if order == ORDERS[0]:
        _settle(first, first_published[0], first_route, outcomes)
    _settle(second, second_published, second_route, outcomes)
    if order == ORDERS[1]:
        _settle(first, first_published[0], first_route, outcomes)

    winner, loser = (SECOND, FIRST) if order == ORDERS[1] else (FIRST, SECOND)
    assert outcomes[winner] == "uploaded", outcomes
    assert outcomes[loser].startswith(
        f"refused: another push published other bytes as {uri}/m_1.tar.gz first"
    )
    assert f"commit {winner[:12]})" in outcomes[loser], outcomes[loser]
    assert outcomes[loser].endswith("bump models/m/model_version.txt (now 1) and push again"), outcomes[loser]
    store = first_route.store
    emptied = order == ORDERS[2] and not versioned
    if emptied:  # the winner had gone: nothing can bring its bytes back but pushing them again
        assert f"is empty until commit {FIRST[:12]} is pushed again" in outcomes[loser]
        assert store.head("m_1.tar.gz") is None
        assert publish_release(first, first_route).outcome == "uploaded"
    entries = history(store, "m")
    assert [(entry.action, entry.commit) for entry in entries] == [("publish", winner)]
    store.download("m_1.tar.gz", tmp_path / "published")
    assert (
        file_digest(tmp_path / "published") == entries[0].sha256
    ), "the history names the bytes the key holds"
    assert entries[0].sha256 == (first if winner == FIRST else second).sha256
