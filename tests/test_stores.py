"""Every store backend against one contract: a directory and S3 over HTTP (moto on loopback) through their
real parts, and the in-memory fake, which must behave as they do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3.models import S3Backend
from werkzeug.serving import make_server

from packager.artifacts import Artifact
from packager.errors import EnvironmentFailure
from packager.release import Destination, ImmutableKey, publish
from packager.release.stores import AlreadyExists, Conflict, MemoryStore, Store, open_store
from packager.release.stores import s3 as s3_backend
from packager.release.stores.s3 import S3Store
from tests.conftest import S3_CREDENTIALS, child_environment, s3_client


@pytest.fixture(params=["file", "s3", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "file":
        return open_store(f"file://{tmp_path / 'store'}", None)
    s3: dict[str, str] = request.getfixturevalue("s3")
    return open_store(s3["PACKAGER_STAGING_URI"], None)


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_create_head_download_and_no_overwrite(store: Store, tmp_path: Path) -> None:
    assert store.head("a/b.tar.gz") is None
    store.put_new("a/b.tar.gz", _file(tmp_path, "one", b"first"), {"sha256": "s1"})
    head = store.head("a/b.tar.gz")
    assert head is not None and head.size == 5 and head.metadata["sha256"] == "s1"
    with pytest.raises(AlreadyExists):
        store.put_new("a/b.tar.gz", _file(tmp_path, "two", b"second"), {"sha256": "s2"})
    store.download("a/b.tar.gz", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"first", "nothing published is overwritten"
    assert list(store.keys("a/")) == ["a/b.tar.gz"]


def test_concurrent_creators_exactly_one_wins(store: Store, tmp_path: Path) -> None:
    sources = [_file(tmp_path, f"v{index}", f"candidate {index}".encode()) for index in range(8)]

    def create(source: Path) -> str:
        try:
            store.put_new("race.tar.gz", source, {"sha256": source.name})
            return "won"
        except AlreadyExists:
            return "lost"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create, sources))
    assert outcomes.count("won") == 1
    head = store.head("race.tar.gz")
    assert head is not None
    store.download("race.tar.gz", tmp_path / "winner")
    assert (tmp_path / "winner").read_bytes() == f"candidate {head.metadata['sha256'][1:]}".encode()


def test_remove_deletes_exactly_the_object_read(store: Store, tmp_path: Path) -> None:
    store.put_new("k.tar.gz", _file(tmp_path, "one", b"first"), {"sha256": "s1"})
    first = store.head("k.tar.gz")
    assert first is not None
    store.remove(first)
    assert store.head("k.tar.gz") is None and list(store.keys()) == []
    store.put_new("k.tar.gz", _file(tmp_path, "two", b"second"), {"sha256": "s2"})
    store.remove(first)  # a stale read: the key holds another object now, which is not removed
    second = store.head("k.tar.gz")
    assert second is not None and second.metadata["sha256"] == "s2"


def test_documents_update_only_from_the_version_read(store: Store) -> None:
    store.write("_releases/m/history.json", b'{"n": 1}', None)
    with pytest.raises(Conflict):
        store.write("_releases/m/history.json", b'{"n": 0}', None)
    found = store.read("_releases/m/history.json")
    assert found is not None and found[0] == b'{"n": 1}'
    store.write("_releases/m/history.json", b'{"n": 2}', found[1])
    with pytest.raises(Conflict):
        store.write("_releases/m/history.json", b'{"n": 3}', found[1])  # stale tag: somebody wrote in between
    assert store.read("_releases/m/history.json")[0] == b'{"n": 2}'  # type: ignore[index]


def test_s3_multipart_with_checksums_and_a_failure_leaves_nothing(
    s3: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_backend, "PART_SIZE", 5 * 1024 * 1024)
    store = open_store(s3["PACKAGER_STAGING_URI"], None)
    assert isinstance(store, S3Store)
    big = _file(tmp_path, "big", os.urandom(12 * 1024 * 1024))
    real_upload_part = store.client.upload_part
    calls: list[int] = []

    def failing(**kwargs: Any) -> Any:
        calls.append(kwargs["PartNumber"])
        if kwargs["PartNumber"] == 2:
            raise ConnectionError("network dropped mid-upload")
        return real_upload_part(**kwargs)

    monkeypatch.setattr(store.client, "upload_part", failing)
    with pytest.raises(ConnectionError):
        store.put_new("big.tar.gz", big, {"sha256": "x"})
    assert store.head("big.tar.gz") is None, "no partial object is ever visible"
    bucket = s3["PACKAGER_STAGING_URI"].split("/")[2]
    assert (
        store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    ), "the upload was aborted"

    monkeypatch.setattr(store.client, "upload_part", real_upload_part)
    store.put_new("big.tar.gz", big, {"sha256": "x"})  # running again completes
    store.download("big.tar.gz", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == big.read_bytes()
    parts = s3_client(s3["AWS_ENDPOINT_URL_S3"]).head_object(
        Bucket=bucket, Key="models/big.tar.gz", PartNumber=1
    )
    assert parts["PartsCount"] == 3


KILLED_PUSH = """
import sys, time
from pathlib import Path
from packager.release.stores import s3
s3.PART_SIZE = 5 * 1024 * 1024
s3.UPLOAD_THREADS = 1
store = s3.S3Store.from_uri(sys.argv[1])
real = store.client.upload_part
def slow(**kwargs):
    result = real(**kwargs)
    print("part", kwargs["PartNumber"], flush=True)
    time.sleep(30)
    return result
store.client.upload_part = slow
store.put_new("killed.tar.gz", Path(sys.argv[2]), {"sha256": "k"})
"""


def test_s3_push_killed_mid_upload_is_invisible_and_rerun_completes(
    s3: dict[str, str], tmp_path: Path
) -> None:
    big = _file(tmp_path, "big", os.urandom(11 * 1024 * 1024))
    environment = child_environment(s3)
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_PUSH, s3["PACKAGER_STAGING_URI"], str(big)],
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "part 1"
    process.send_signal(signal.SIGKILL)
    process.wait()
    store = open_store(s3["PACKAGER_STAGING_URI"], None)
    assert store.head("killed.tar.gz") is None
    store.put_new("killed.tar.gz", big, {"sha256": "k"})
    store.download("killed.tar.gz", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == big.read_bytes()


def test_s3_server_side_copy_only_if_absent(s3: dict[str, str], tmp_path: Path) -> None:
    staging = open_store(s3["PACKAGER_STAGING_URI"], None)
    production = open_store(s3["PACKAGER_PRODUCTION_URI"], None)
    staging.put_new("b/c/m_1.tar.gz", _file(tmp_path, "a", b"tested bytes"), {"sha256": "t"})
    production.copy_new(staging, "b/c/m_1.tar.gz", key="m_1.tar.gz", metadata={"sha256": "t"})
    production.download("m_1.tar.gz", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"tested bytes"
    with pytest.raises(AlreadyExists):
        production.copy_new(staging, "b/c/m_1.tar.gz", key="m_1.tar.gz", metadata={"sha256": "t"})


def test_store_uris(tmp_path: Path) -> None:
    assert open_store("file:dist/stores/x", tmp_path).directory == tmp_path / "dist" / "stores" / "x"  # type: ignore[attr-defined]
    assert open_store("file:///srv/models", None).directory == Path("/srv/models")  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="a store URI is"):
        open_store("ftp://host/x", None)


def test_copies_are_server_side_between_s3_stores_and_downloads_across_kinds(
    s3: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = open_store(s3["PACKAGER_STAGING_URI"], None)
    production = open_store(s3["PACKAGER_PRODUCTION_URI"], None)
    staging.put_new("b/c/m_1.tar.gz", _file(tmp_path, "a", b"tested bytes"), {"sha256": "t"})

    def no_download(key: str, destination: Path) -> None:
        raise AssertionError("an S3-to-S3 copy must not pass through this machine")

    monkeypatch.setattr(staging, "download", no_download)
    production.copy_new(staging, "b/c/m_1.tar.gz", key="m_1.tar.gz", metadata={"sha256": "t"})
    local = open_store(f"file://{tmp_path / 'local'}", None)
    local.put_new("x/m_2.tar.gz", _file(tmp_path, "b", b"local bytes"), {"sha256": "l"})
    production.copy_new(local, "x/m_2.tar.gz", key="m_2.tar.gz", metadata={"sha256": "l"})
    memory = MemoryStore()
    memory.copy_new(production, "m_1.tar.gz", key="copied/m_1.tar.gz", metadata={"sha256": "t"})
    local.copy_new(memory, "copied/m_1.tar.gz", key="m_1.tar.gz", metadata={"sha256": "t"})
    for store, key, data in [
        (production, "m_2.tar.gz", b"local bytes"),
        (local, "m_1.tar.gz", b"tested bytes"),
    ]:
        store.download(key, tmp_path / "check")
        assert (tmp_path / "check").read_bytes() == data
        head = store.head(key)
        assert head is not None and head.metadata["sha256"] == data.decode()[0]
    for opened in (staging, production, local, memory):
        opened.close()


def test_s3_conflict_409_is_retried_and_never_taken_for_exists(
    s3: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = S3Store.from_uri(s3["PACKAGER_STAGING_URI"])
    real_put = store.client.put_object
    answers = iter([409, 409])

    def in_flight(**kwargs: Any) -> Any:
        if next(answers, None) == 409:
            error = {"Code": "ConditionalRequestConflict", "Message": "A conflicting operation is in flight"}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 409}}, "PutObject")
        return real_put(**kwargs)

    monkeypatch.setattr(store.client, "put_object", in_flight)
    store.put_new("m_1.tar.gz", _file(tmp_path, "a", b"bytes"), {"sha256": "a"})
    head = store.head("m_1.tar.gz")
    assert head is not None and head.metadata["sha256"] == "a", "created after two 409s"

    answers = iter([409] * s3_backend.IN_FLIGHT_RETRIES)
    with pytest.raises(EnvironmentFailure, match="ConditionalRequestConflict"):
        store.put_new("m_2.tar.gz", _file(tmp_path, "b", b"bytes"), {"sha256": "b"})


def test_s3_conflict_409_on_completing_a_multipart_upload_starts_it_again(
    s3: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3's answer to a 409 on CompleteMultipartUpload is to create the upload again and resend its parts."""
    monkeypatch.setattr(s3_backend, "PART_SIZE", 5 * 1024 * 1024)
    store = S3Store.from_uri(s3["PACKAGER_STAGING_URI"])
    real_complete, real_create = store.client.complete_multipart_upload, store.client.create_multipart_upload
    answers, uploads = iter([409]), []

    def in_flight(**kwargs: Any) -> Any:
        if next(answers, None) == 409:
            error = {"Code": "ConditionalRequestConflict", "Message": "A conflicting operation is in flight"}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 409}}, "Complete")
        return real_complete(**kwargs)

    def counted(**kwargs: Any) -> Any:
        uploads.append(kwargs["Key"])
        return real_create(**kwargs)

    monkeypatch.setattr(store.client, "complete_multipart_upload", in_flight)
    monkeypatch.setattr(store.client, "create_multipart_upload", counted)
    data = os.urandom(5 * 1024 * 1024 + 1)
    store.put_new("m_3.tar.gz", _file(tmp_path, "c", data), {"sha256": "c"})
    store.download("m_3.tar.gz", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data and len(uploads) == 2, uploads
    bucket = s3["PACKAGER_STAGING_URI"].split("/")[2]
    assert (
        store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    ), "the first was aborted"


@pytest.fixture
def racing_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 API unserialized, each object write delayed so that two conditional creates of one key
    both pass moto's existence check before either stores: the race moto loses and S3 never does."""
    real = S3Backend.put_object

    def slowed(self: S3Backend, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", slowed)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    for name, value in {**S3_CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint}.items():
        monkeypatch.setenv(name, value)
    yield endpoint
    server.shutdown()


def test_publish_reads_back_and_reports_a_lost_race_on_a_racing_store(racing_s3: str, tmp_path: Path) -> None:
    s3_client(racing_s3).create_bucket(Bucket="race")
    store = open_store("s3://race/models", None)
    created: list[str] = []
    real_put_new = store.put_new

    def counted(key: str, source: Path, metadata: dict[str, str]) -> None:
        real_put_new(key, source, metadata)
        created.append(metadata["sha256"])
        time.sleep(0.6)  # both writes have landed before either pusher reads back

    store.put_new = counted  # type: ignore[method-assign]
    candidates = []
    for name in ("a", "b"):
        path = _file(tmp_path, f"{name}.tar.gz", f"artifact {name}".encode())
        manifest = {"model": "m", "version": 1, "content_digest": name * 64}
        candidates.append(Artifact(path, name * 64, manifest))
    target = Destination(store, "m_1.tar.gz", production=True)

    def race(artifact: Artifact) -> str:
        try:
            return publish(artifact, target, "c" * 40).outcome
        except ImmutableKey as refused:
            return f"refused: {refused}"

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(race, candidates))
    assert len(created) == 2, "moto let both conditional creates succeed (the race happened)"
    stored = store.head("m_1.tar.gz")
    assert stored is not None
    winner = [
        artifact.sha256
        for artifact, outcome in zip(candidates, outcomes, strict=True)
        if outcome == "uploaded"
    ]
    assert winner == [stored.metadata["sha256"]], outcomes
    assert sum(outcome.startswith("refused: ") for outcome in outcomes) == 1, outcomes
