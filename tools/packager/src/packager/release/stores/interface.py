"""Where artifacts are published: one small interface, an S3 backend and a local-directory backend.

Every write is conditional. Artifacts are created only if absent (S3 `If-None-Match: *`; a hard link on
disk), so of several concurrent pushers of one key exactly one wins; small documents (release history,
the current pointer) are replaced only if unchanged since read (S3 `If-Match: <etag>`; a lock on disk).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, TypeVar
from urllib.parse import urlparse

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from packager.archives import file_digest
from packager.errors import EnvironmentFailure, UsageError

PART_SIZE = 16 * 1024 * 1024
T = TypeVar("T")
UPLOAD_THREADS = 8


class AlreadyExists(Exception):
    """The key is taken (another pusher won, or it was published before)."""


class Conflict(Exception):
    """A document changed since it was read; read it again and retry."""


@dataclass(frozen=True)
class StoredObject:
    """What a store knows of an object without reading it."""

    key: str
    size: int
    etag: str
    metadata: dict[str, str]


class Store(Protocol):
    """A flat key space of immutable artifacts and small conditionally-updated documents."""

    uri: str

    def head(self, key: str) -> StoredObject | None:
        """The object at `key`, or None."""

    def put_new(self, key: str, source: Path, metadata: dict[str, str]) -> None:
        """Create `key` from a file; raise AlreadyExists if it exists. Never visible half-written."""

    def copy_new(self, source: Store, source_key: str, key: str, metadata: dict[str, str]) -> None:
        """Create `key` from another store's object (server-side where both are the same kind)."""

    def download(self, key: str, destination: Path) -> None:
        """Write the object's bytes to `destination`."""

    def read(self, key: str) -> tuple[bytes, str] | None:
        """A small document and its version tag, or None."""

    def write(self, key: str, data: bytes, if_match: str | None) -> None:
        """Replace a document only if its tag is still `if_match` (None: only if absent); else Conflict."""

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under `prefix`."""


def open_store(uri: str, root: Path | None) -> Store:
    """The store a URI names: s3://bucket/prefix, file:///absolute/dir, or file:dir (relative to `root`)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise UsageError(f"{uri}: an S3 store URI is s3://bucket/prefix")
        return S3Store(uri, parsed.netloc, parsed.path.lstrip("/"))
    if parsed.scheme == "file":
        path = Path(parsed.path if parsed.netloc in ("", "localhost") else parsed.netloc + parsed.path)
        if not path.is_absolute():
            path = (root or Path.cwd()) / path
        return FileStore(uri, path)
    raise UsageError(f"{uri}: a store URI is s3://bucket/prefix or file:///dir")


class FileStore:
    """A directory: objects are files, metadata sits beside them in `<key>.meta.json`."""

    def __init__(self, uri: str, directory: Path) -> None:
        self.uri = uri
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        meta = path.with_name(path.name + ".meta.json")
        metadata = json.loads(meta.read_text()) if meta.is_file() else {"sha256": file_digest(path)}
        return StoredObject(key, path.stat().st_size, metadata.get("sha256", ""), metadata)

    def put_new(self, key: str, source: Path, metadata: dict[str, str]) -> None:
        with self._staged(key, lambda partial: shutil.copyfile(source, partial)) as partial:
            self._link_new(key, partial, metadata)

    def copy_new(self, source: Store, source_key: str, key: str, metadata: dict[str, str]) -> None:
        with self._staged(key, lambda partial: source.download(source_key, partial)) as partial:
            self._link_new(key, partial, metadata)

    @contextmanager
    def _staged(self, key: str, fill: Any) -> Iterator[Path]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(handle)
        partial = Path(name)
        try:
            fill(partial)
            yield partial
        finally:
            partial.unlink(missing_ok=True)

    def _link_new(self, key: str, partial: Path, metadata: dict[str, str]) -> None:
        path = self._path(key)
        meta = path.with_name(path.name + ".meta.json")
        meta_partial = partial.with_suffix(".meta")
        meta_partial.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        try:
            os.link(partial, path)  # atomic, and fails if the key exists: exactly one writer wins
        except FileExistsError:
            meta_partial.unlink()
            raise AlreadyExists(key) from None
        os.replace(meta_partial, meta)

    def download(self, key: str, destination: Path) -> None:
        shutil.copyfile(self._path(key), destination)

    def read(self, key: str) -> tuple[bytes, str] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        data = path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def write(self, key: str, data: bytes, if_match: str | None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read(key)
            if (current[1] if current else None) != if_match:
                raise Conflict(key)
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            partial.write_bytes(data)
            os.replace(partial, path)

    def keys(self, prefix: str = "") -> Iterator[str]:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.rglob("*")):
            key = path.relative_to(self.directory).as_posix()
            if (
                path.is_file()
                and key.startswith(prefix)
                and not path.name.endswith((".meta.json", ".lock", ".partial"))
            ):
                yield key


PRECONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict"}
MISSING = {"404", "NoSuchKey", "NotFound"}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Store:
    """An S3 bucket and prefix, through boto3 (its standard credential chain and endpoint settings,
    AWS_ENDPOINT_URL_S3 included). Credentials are never logged."""

    def __init__(self, uri: str, bucket: str, prefix: str) -> None:
        self.uri = uri
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.client = boto3.client("s3", config=BotoConfig(retries={"max_attempts": 5, "mode": "standard"}))

    def _key(self, key: str) -> str:
        return self.prefix + key

    @contextmanager
    def _call(self, action: str) -> Iterator[None]:
        """S3 failures other than a failed precondition or a missing key become EnvironmentFailure."""
        try:
            yield
        except ClientError as error:
            if _code(error) in PRECONDITION_FAILED | MISSING:
                raise
            raise EnvironmentFailure(f"S3 refused to {action} in {self.uri}: {error}") from None
        except BotoCoreError as error:
            raise EnvironmentFailure(f"could not {action} in {self.uri}: {error}") from None

    @contextmanager
    def _create(self, key: str) -> Iterator[None]:
        """A conditional create: a failed precondition means somebody created the key first."""
        try:
            with self._call(f"write {key}"):
                yield
        except ClientError as error:
            if _code(error) in PRECONDITION_FAILED:
                raise AlreadyExists(key) from None
            raise EnvironmentFailure(f"S3 refused to write {key} in {self.uri}: {error}") from None

    def _unless_missing(self, key: str, fetch: Callable[[], T]) -> T | None:
        """`fetch()` (a read of `key`), or None when the key does not exist."""
        try:
            with self._call(f"read {key}"):
                return fetch()
        except ClientError as error:
            if _code(error) in MISSING:
                return None
            raise EnvironmentFailure(f"S3 refused to read {key} in {self.uri}: {error}") from None

    def head(self, key: str) -> StoredObject | None:
        response = self._unless_missing(
            key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        )
        if response is None:
            return None
        return StoredObject(
            key, int(response["ContentLength"]), str(response["ETag"]), dict(response.get("Metadata", {}))
        )

    def put_new(self, key: str, source: Path, metadata: dict[str, str]) -> None:
        size = source.stat().st_size
        with self._create(key):
            if size <= PART_SIZE:
                body = source.read_bytes()
                checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=body,
                    IfNoneMatch="*",
                    ChecksumSHA256=checksum,
                    Metadata=metadata,
                )
            else:
                self._multipart(key, source, size, metadata)

    def _multipart(self, key: str, source: Path, size: int, metadata: dict[str, str]) -> None:
        """Parts with SHA-256 checksums, uploaded in parallel; the object appears only on completion."""
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=self._key(key), ChecksumAlgorithm="SHA256", Metadata=metadata
        )["UploadId"]

        def send(number: int, offset: int) -> dict[str, Any]:
            with open(source, "rb") as handle:
                handle.seek(offset)
                body = handle.read(PART_SIZE)
            checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
            part = self.client.upload_part(
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
            return {"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": checksum}

        with self._aborted_unless_completed(key, upload_id):
            offsets = range(0, size, PART_SIZE)
            with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
                parts = list(pool.map(send, range(1, len(offsets) + 1), offsets))
            self._complete(key, upload_id, parts)

    @contextmanager
    def _aborted_unless_completed(self, key: str, upload_id: str) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key), UploadId=upload_id)
            raise

    def _complete(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self._key(key),
            UploadId=upload_id,
            IfNoneMatch="*",
            MultipartUpload={"Parts": parts},
        )

    def copy_new(self, source: Store, source_key: str, key: str, metadata: dict[str, str]) -> None:
        if not isinstance(source, S3Store):
            with tempfile.TemporaryDirectory(prefix="packager-copy-") as scratch:
                source.download(source_key, Path(scratch) / "object")
                self.put_new(key, Path(scratch) / "object", metadata)
            return
        head = source.head(source_key)
        if head is None:
            raise EnvironmentFailure(f"{source.uri}: {source_key} does not exist")
        # A multipart copy, because S3 honours If-None-Match on completing an upload: server-side and safe
        # against concurrent promoters.
        copy_source = {"Bucket": source.bucket, "Key": source._key(source_key)}
        part_limit = 5 * 1024**3
        with self._create(key):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), Metadata=metadata
            )["UploadId"]
            with self._aborted_unless_completed(key, upload_id):
                parts = []
                for number, offset in enumerate(range(0, max(head.size, 1), part_limit), start=1):
                    last = max(min(offset + part_limit, head.size) - 1, 0)
                    part = self.client.upload_part_copy(
                        Bucket=self.bucket,
                        Key=self._key(key),
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource=copy_source,
                        CopySourceRange=f"bytes={offset}-{last}",
                    )
                    parts.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
                self._complete(key, upload_id, parts)

    def download(self, key: str, destination: Path) -> None:
        with self._call(f"read {key}"):
            self.client.download_file(self.bucket, self._key(key), str(destination))

    def read(self, key: str) -> tuple[bytes, str] | None:
        response = self._unless_missing(
            key, lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        )
        if response is None:
            return None
        return response["Body"].read(), str(response["ETag"])

    def write(self, key: str, data: bytes, if_match: str | None) -> None:
        condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        try:
            with self._create(key):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=data,
                    ContentType="application/json",
                    **condition,
                )
        except AlreadyExists:
            raise Conflict(key) from None

    def keys(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._call(f"list {prefix or 'keys'}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(self.prefix) :]
