"""The S3 store: a bucket and prefix (`s3://bucket/prefix`) through boto3, its standard credential chain
and endpoint settings (AWS_ENDPOINT_URL_S3 included). Creates are `If-None-Match: *` (PutObject and
CompleteMultipartUpload); documents are replaced `If-Match: <etag>`. Credentials are never logged."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from packager.errors import EnvironmentFailure, UsageError
from packager.release.stores.interface import (
    AlreadyExists,
    ArtifactStore,
    Conflict,
    Location,
    StoredObject,
    copy_by_download,
)

PART_SIZE = 16 * 1024 * 1024
COPY_PART_SIZE = 5 * 1024**3  # S3's largest part for UploadPartCopy
T = TypeVar("T")
UPLOAD_THREADS = 8


PRECONDITION_FAILED = {"PreconditionFailed"}
# 409 ConditionalRequestConflict: another conditional request on the key was in flight. S3 says to retry;
# it never means the key exists.
IN_FLIGHT = "ConditionalRequestConflict"
IN_FLIGHT_RETRIES = 6
MISSING = {"404", "NoSuchKey", "NotFound"}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Store:
    """An S3 bucket and a key prefix in it."""

    def __init__(self, uri: str, bucket: str, prefix: str) -> None:
        self.uri = uri
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.client = boto3.client("s3", config=BotoConfig(retries={"max_attempts": 5, "mode": "standard"}))

    @classmethod
    def from_uri(cls, uri: str, root: Path | None = None) -> S3Store:
        """`s3://bucket/prefix` (`root` is not used: S3 keys are not relative to a checkout)."""
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise UsageError(f"{uri}: an S3 store URI is s3://bucket/prefix")
        return cls(uri, parsed.netloc, parsed.path.lstrip("/"))

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

    def _retried_while_in_flight(self, request: Callable[[], object]) -> None:
        """Send a conditional request, again (with backoff) while S3 answers 409 ConditionalRequestConflict."""
        for attempt in range(IN_FLIGHT_RETRIES):
            try:
                request()
                return
            except ClientError as error:
                if _code(error) != IN_FLIGHT or attempt == IN_FLIGHT_RETRIES - 1:
                    raise
                time.sleep(0.05 * 2**attempt)

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
            key,
            int(response["ContentLength"]),
            str(response["ETag"]),
            dict(response.get("Metadata", {})),
            str(response.get("VersionId") or ""),
        )

    def put_new(self, key: str, source: Path, metadata: dict[str, str]) -> None:
        size = source.stat().st_size
        with self._create(key):
            if size <= PART_SIZE:
                body = source.read_bytes()
                checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
                self._put_object(key, body, IfNoneMatch="*", ChecksumSHA256=checksum, Metadata=metadata)
            else:  # a 409 on completing: S3 says to start the upload again
                self._retried_while_in_flight(lambda: self._multipart(key, source, size, metadata))

    def _put_object(self, key: str, body: bytes, **fields: Any) -> None:
        """One PUT of a whole object (condition, checksum, metadata in `fields`), retried while in flight."""
        self._retried_while_in_flight(
            lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, **fields)
        )

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

    def copy_new(self, source: ArtifactStore, source_key: str, *, key: str, metadata: dict[str, str]) -> None:
        where = source.locate(source_key)
        if where.scheme != "s3":
            copy_by_download(source, source_key, target=self, key=key, metadata=metadata)
            return
        head = source.head(source_key)
        if head is None:
            raise EnvironmentFailure(f"{source.uri}: {source_key} does not exist")
        # A multipart copy, because S3 honours If-None-Match on completing an upload: server-side and safe
        # against concurrent promoters.
        copy_source = {"Bucket": where.container, "Key": where.path}
        with self._create(key):
            self._retried_while_in_flight(lambda: self._copy_parts(key, copy_source, head.size, metadata))

    def _copy_parts(self, key: str, copy_source: dict[str, str], size: int, metadata: dict[str, str]) -> None:
        """One multipart upload of `copy_source`'s bytes, server-side, completed `If-None-Match: *`."""
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=self._key(key), Metadata=metadata
        )["UploadId"]
        with self._aborted_unless_completed(key, upload_id):
            parts = []
            for number, offset in enumerate(range(0, max(size, 1), COPY_PART_SIZE), start=1):
                last = max(min(offset + COPY_PART_SIZE, size) - 1, 0)
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

    def remove(self, stored: StoredObject) -> None:
        """Its version where the bucket keeps versions (the one before it is current again), else a delete
        `If-Match: <etag>` (S3 honours it since September 2025)."""
        exact = (
            {"VersionId": stored.version} if stored.version not in ("", "null") else {"IfMatch": stored.etag}
        )
        try:
            with self._call(f"delete {stored.key}"):
                self._retried_while_in_flight(
                    lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(stored.key), **exact)
                )
        except ClientError:
            pass  # only a failed precondition or a missing key reach here: it changed or went; not ours

    def locate(self, key: str) -> Location:
        return Location("s3", self.bucket, self._key(key))

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
                self._put_object(key, data, ContentType="application/json", **condition)
        except AlreadyExists:
            raise Conflict(key) from None

    def keys(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._call(f"list {prefix or 'keys'}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(self.prefix) :]

    def close(self) -> None:
        self.client.close()
