"""Every store backend against one contract: a directory and S3 over HTTP (moto on loopback) through their
real parts, and the in-memory fake, which must behave as they do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from packager.release.stores import AlreadyExists, Conflict, MemoryStore, Store, open_store
from packager.release.stores import s3 as s3_backend
from packager.release.stores.s3 import S3Store
from tests.conftest import s3_client


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
    environment = {**os.environ, **s3, "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path)}
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
    production.copy_new(staging, "b/c/m_1.tar.gz", "m_1.tar.gz", {"sha256": "t"})
    production.download("m_1.tar.gz", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"tested bytes"
    with pytest.raises(AlreadyExists):
        production.copy_new(staging, "b/c/m_1.tar.gz", "m_1.tar.gz", {"sha256": "t"})


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
    production.copy_new(staging, "b/c/m_1.tar.gz", "m_1.tar.gz", {"sha256": "t"})
    local = open_store(f"file://{tmp_path / 'local'}", None)
    local.put_new("x/m_2.tar.gz", _file(tmp_path, "b", b"local bytes"), {"sha256": "l"})
    production.copy_new(local, "x/m_2.tar.gz", "m_2.tar.gz", {"sha256": "l"})
    memory = MemoryStore()
    memory.copy_new(production, "m_1.tar.gz", "copied/m_1.tar.gz", {"sha256": "t"})
    local.copy_new(memory, "copied/m_1.tar.gz", "m_1.tar.gz", {"sha256": "t"})
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
