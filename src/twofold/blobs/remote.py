"""What a TARGET names: a local folder, `sftp://user@host[:port]/path` or
`s3://bucket/prefix`; parsed here, and opened as the ObjectStore of its image store."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from twofold.blobs.objects import LocalObjects, ObjectStore, TargetMissing
from twofold.blobs.retry import RetryPolicy
from twofold.core.errors import UsageError
from twofold.fsinfo.volume import DriveGuard

STORE_DIR = "twofold-images"
"""The store's folder (or key prefix) inside a target, beside the backup sets' `twofold/`."""
ENDPOINT_ENV = "AWS_ENDPOINT_URL"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class SftpTarget:
    """An SFTP target: the store lives in `<path>/twofold-images/` on `host`."""

    host: str
    port: int | None
    user: str | None
    password: str | None
    path: str

    def url(self) -> str:
        """The target as a URL, without the password."""
        who = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"sftp://{who}{self.host}{port}{self.path}"


@dataclass(frozen=True)
class S3Target:
    """An S3 target: the store's keys start with `<prefix>twofold-images/` in `bucket`."""

    bucket: str
    prefix: str  # "" or ending in "/"

    def url(self) -> str:
        """The target as a URL."""
        return f"s3://{self.bucket}/{self.prefix}"


def is_url(text: str) -> bool:
    """True when `text` names a network target rather than a folder."""
    return text.startswith(("sftp://", "s3://"))


def parse_target(text: str) -> str | SftpTarget | S3Target:
    """The target `text` names (a folder path is returned as it is); UsageError for a
    URL that cannot be used. Messages never repeat a password given in the URL."""
    if not is_url(text):
        if "://" in text:
            kind = text.split("://", maxsplit=1)[0]
            raise UsageError(f"unknown target kind {kind!r}",
                             "use a folder, sftp://user@host[:port]/path or s3://bucket/prefix")
        return text
    parts = urlsplit(text)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.fullmatch(bucket):
            raise UsageError(f"bad S3 bucket name {bucket!r}", "use s3://bucket/prefix")
        prefix = "/".join(p for p in parts.path.split("/") if p)
        return S3Target(bucket, f"{prefix}/" if prefix else "")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"bad port in {_redact(text)}") from None
    if not parts.hostname:
        raise UsageError(f"no host in {_redact(text)}", "use sftp://user@host[:port]/path")
    path = unquote(parts.path) or "/"
    if path.startswith("/~"):  # sftp://host/~/x: relative to the login folder
        path = path[2:].lstrip("/") or "."
    return SftpTarget(parts.hostname, port, unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None, path)


def _redact(text: str) -> str:
    return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", text)


def describe_target(text: str) -> str:
    """A TARGET for messages: a URL's password replaced by ***."""
    return _redact(text)


def open_target(text: str, s3_endpoint: str | None = None,
                policy: RetryPolicy | None = None) -> ObjectStore:
    """The ObjectStore of the image store on the target `text`. Network stores connect
    lazily; `s3_endpoint` (else AWS_ENDPOINT_URL, else the AWS config) for non-AWS S3."""
    target = parse_target(text)
    policy = policy or RetryPolicy.from_env()
    if isinstance(target, str):
        if not os.path.isdir(target):
            raise TargetMissing(f"target {target} does not exist or is not a folder",
                                "is the drive plugged in and mounted?")
        return LocalObjects(os.path.join(target, STORE_DIR),
                            DriveGuard(target, None, text))
    if isinstance(target, SftpTarget):
        from twofold.blobs.sftp import SftpObjects

        base = f"{target.path.rstrip('/')}/{STORE_DIR}" if target.path != "." else STORE_DIR
        return SftpObjects(target, base, policy)
    from twofold.blobs.s3 import S3Objects

    endpoint = s3_endpoint or os.environ.get(ENDPOINT_ENV) or None
    return S3Objects(target.bucket, f"{target.prefix}{STORE_DIR}/", endpoint, policy)
