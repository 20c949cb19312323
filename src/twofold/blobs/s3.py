"""The ObjectStore on S3 (AWS, Ceph RGW, MinIO...) through boto3: one key per object
under the store's prefix, put-once by a conditional PUT (If-None-Match: *), objects above
64 MiB in parts uploaded in parallel and resumed, every call retried with backoff.

Bodies are sent without a SHA-256 of the payload in the signature (the headers are still
signed): packs are named by their own BLAKE3 and verify reads them back, so hashing every
byte twice more, once here and once on the gateway, buys nothing. Small objects (manifests,
index files, lock records) carry a Content-MD5 the server checks instead."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
import botocore.exceptions as bce
from botocore.config import Config

from twofold.blobs.objects import ObjectInfo, StoreError, check_name
from twofold.blobs.retry import (
    Gone,
    RetryPolicy,
    Taken,
    Transient,
    found,
    read_or_missing,
)

T = TypeVar("T")
MULTIPART_ABOVE = 64 << 20
"""Objects larger than this are uploaded in parts (packs, at most 32 MiB, go in one PUT)."""
PART_SIZE = 8 << 20
"""The size of those parts."""
CHECKED_BELOW = 4 << 20
"""Objects smaller than this carry a Content-MD5."""
PART_WORKERS = 4
_MISSING = {"NoSuchKey", "404", "NotFound"}
_PAST_END = {"InvalidRange", "416"}
_EXISTS = {"PreconditionFailed", "412"}
_TRANSIENT = {"BadDigest", "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
              "Throttling", "ThrottlingException", "RequestTimeTooSkewed",
              "ConditionalRequestConflict", "OperationAborted", "503", "500", "502", "504"}
_NETWORK = (bce.ConnectionError, bce.HTTPClientError, bce.ReadTimeoutError,
            bce.ConnectTimeoutError, bce.ResponseStreamingError, ConnectionError,
            TimeoutError)


class _PastEnd(Exception):
    pass


def _code(err: bce.ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", "")) or \
        str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


class S3Objects:
    """An ObjectStore under `prefix` in an S3 bucket. Credentials and region come from
    the usual AWS environment variables and config files; they never enter a message."""

    writers = 4

    def __init__(self, bucket: str, prefix: str, endpoint: str | None,
                 policy: RetryPolicy) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.policy = policy
        self._client: Any = None
        self._lock = threading.Lock()
        # making a client takes 0.2-0.3 s (botocore loads its service models), which the
        # caller can spend planning; the first call waits on the lock until it is made
        threading.Thread(target=self._warm, name="twofold-s3-client", daemon=True).start()

    def _warm(self) -> None:
        try:
            self.client  # noqa: B018 -- made for its side effect
        except Exception:  # the first real call reports it
            return

    def describe(self) -> str:
        """s3://bucket/prefix, and the endpoint when it is not AWS's."""
        where = f"s3://{self.bucket}/{self.prefix.rstrip('/')}"
        return f"{where} at {self.endpoint.split('@')[-1]}" if self.endpoint else where

    @property
    def client(self) -> Any:
        """The boto3 client, made on first use (thread-safe; boto3 clients are)."""
        with self._lock:
            if self._client is None:
                config = Config(retries={"total_max_attempts": 1}, connect_timeout=5,
                                read_timeout=60, max_pool_connections=32,
                                request_checksum_calculation="when_required",
                                response_checksum_validation="when_required",
                                s3={"payload_signing_enabled": False})
                self._client = boto3.session.Session().client(
                    "s3", endpoint_url=self.endpoint, config=config)
            return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """`fn()` with retries; S3's errors become StoreError, Gone, Taken or _PastEnd."""
        def once() -> T:
            try:
                return fn()
            except bce.ClientError as err:
                code = _code(err)
                if code in _MISSING:
                    raise Gone from None
                if code in _EXISTS:
                    raise Taken from None
                if code in _PAST_END:
                    raise _PastEnd from None
                if code in _TRANSIENT:
                    raise Transient(f"S3 said {code}") from None
                raise self._refused(code, what) from None
            except bce.NoCredentialsError:
                raise StoreError(f"no S3 credentials for {self.describe()}",
                                 "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                                 "AWS_PROFILE with ~/.aws/credentials") from None
            except _NETWORK as err:
                raise Transient(type(err).__name__) from None
        return self.policy.run(once, self.describe(), what)

    def _refused(self, code: str, what: str) -> StoreError:
        if code == "NoSuchBucket":
            return StoreError(f"the bucket {self.bucket} does not exist",
                              "create it first (aws s3 mb, or your storage's console)")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return StoreError(f"S3 refused {what} in {self.describe()} ({code})",
                              "check the credentials and the bucket's permissions")
        return StoreError(f"S3 failed {what} in {self.describe()} ({code})")

    def _key(self, name: str) -> str:
        return self.prefix + check_name(name)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every key under the store's prefix + `prefix`, sorted."""
        def run() -> list[ObjectInfo]:
            found = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                for o in page.get("Contents", []):
                    name = o["Key"][len(self.prefix):]
                    if name and not name.endswith("/"):
                        found.append(ObjectInfo(name, int(o["Size"])))
            return sorted(found, key=lambda i: i.name)
        return self._call(f"listing {prefix or 'the store'}", run)

    def get(self, name: str) -> bytes:
        """GET the whole object."""
        return self._read(name, {})

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """A ranged GET; b"" past the end."""
        if length <= 0:
            return b""
        try:
            return self._read(name, {"Range": f"bytes={offset}-{offset + length - 1}"})
        except _PastEnd:
            return b""

    def _read(self, name: str, extra: dict[str, str]) -> bytes:
        key = self._key(name)

        def run() -> bytes:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key,
                                                **extra)["Body"].read())
        return read_or_missing(lambda: self._call(f"reading {name}", run), name,
                               self.describe())

    def exists(self, name: str) -> bool:
        """HEAD the object."""
        key = self._key(name)
        return found(lambda: self._call(f"checking {name}", lambda: self.client.head_object(
            Bucket=self.bucket, Key=key)))

    def put_once(self, name: str, data: bytes) -> bool:
        """A PUT with If-None-Match: * (the server refuses an existing name); above
        MULTIPART_ABOVE a multipart upload, after a HEAD (such objects are index files of
        large disks, named by their content, so a racing writer can only store the same
        bytes)."""
        key = self._key(name)
        if len(data) > MULTIPART_ABOVE:
            if self.exists(name):
                return False
            self._multipart(key, data)
            return True
        extra = {}
        if len(data) < CHECKED_BELOW:
            digest = hashlib.md5(data, usedforsecurity=False).digest()
            extra["ContentMD5"] = base64.b64encode(digest).decode()

        def run() -> None:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*",
                                   **extra)
        try:
            self._call(f"writing {name}", run)
        except Taken:
            return False
        return True

    def _multipart(self, key: str, data: bytes) -> None:
        """Upload in parts, reusing the parts an interrupted upload of this key already
        stored (same part number and MD5)."""
        parts = [data[i:i + PART_SIZE] for i in range(0, len(data), PART_SIZE)]
        upload_id, done = self._resumable(key)
        if upload_id is None:
            upload_id = self._call("starting an upload", lambda: self.client.
                                   create_multipart_upload(Bucket=self.bucket, Key=key)
                                   )["UploadId"]

        def send(number: int) -> dict[str, Any]:
            body = parts[number - 1]
            if number in done and done[number] == \
                    f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"':
                return {"PartNumber": number, "ETag": done[number]}
            sent = self._call(f"uploading part {number} of {key}", lambda: self.client.
                              upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                          PartNumber=number, Body=body))
            return {"PartNumber": number, "ETag": sent["ETag"]}

        with ThreadPoolExecutor(PART_WORKERS, thread_name_prefix="twofold-part") as pool:
            sent = list(pool.map(send, range(1, len(parts) + 1)))
        self._call(f"finishing the upload of {key}", lambda: self.client.
                   complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": sent}))

    def _resumable(self, key: str) -> tuple[str | None, dict[int, str]]:
        """The newest unfinished upload of `key` and its parts' ETags, if any."""
        found = self._call("listing unfinished uploads", lambda: self.client.
                           list_multipart_uploads(Bucket=self.bucket, Prefix=key))
        ups = sorted((u for u in found.get("Uploads", []) if u["Key"] == key),
                     key=lambda u: u["Initiated"])
        if not ups:
            return None, {}
        upload_id = str(ups[-1]["UploadId"])
        listed = self._call("listing uploaded parts", lambda: self.client.list_parts(
            Bucket=self.bucket, Key=key, UploadId=upload_id))
        return upload_id, {int(p["PartNumber"]): str(p["ETag"])
                           for p in listed.get("Parts", [])}

    def delete(self, name: str) -> None:
        """DELETE (no error when already gone)."""
        key = self._key(name)
        try:
            self._call(f"deleting {name}",
                       lambda: self.client.delete_object(Bucket=self.bucket, Key=key))
        except Gone:
            return

    def discard_partial(self) -> int:
        """Abort every unfinished multipart upload under the store's prefix."""
        found = self._call("listing unfinished uploads", lambda: self.client.
                           list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix))
        count = 0
        for u in found.get("Uploads", []):
            def abort(u: dict[str, Any] = u) -> None:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=u["Key"],
                                                   UploadId=u["UploadId"])
            try:
                self._call("aborting an unfinished upload", abort)
            except Gone:
                continue
            count += 1
        return count
