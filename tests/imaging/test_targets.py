"""The shared suite: every storage kind (local folder, SFTP to a real sshd, S3 on a real
Ceph gateway) passes the object store contract, runs every image command through the CLI,
and keeps the locks apart; plus TARGET parsing."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.blobs.objects import ObjectMissing, StoreError
from twofold.blobs.remote import S3Target, SftpTarget, describe_target, parse_target
from twofold.chunks.lease import Lease, records
from twofold.cli.app import app
from twofold.core.errors import UsageError
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.manage import prune

from .conftest import FixedClock, MiB, Place

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["image", *args])
    return result.exit_code, result.output


def source_file(path: Path, seed: int, changed: int = 0) -> Path:
    """8 MiB of seeded data with zeros in it; `changed` MiB of it rewritten."""
    import random

    rnd = random.Random(seed)
    data = bytearray(rnd.randbytes(6 * MiB) + bytes(2 * MiB))
    for i in range(changed):
        data[i * MiB:(i + 1) * MiB] = random.Random(seed * 100 + i).randbytes(MiB)
    path.write_bytes(data)
    return path


def test_object_store_contract(place: Place) -> None:
    objects = place.objects()
    assert objects.list() == [] and not objects.exists("a/b")
    assert objects.put_once("a/b", b"first")
    assert not objects.put_once("a/b", b"second")  # never overwritten
    assert objects.get("a/b") == b"first"
    assert objects.get_range("a/b", 1, 3) == b"irs"
    assert objects.get_range("a/b", 3, 100) == b"st"
    assert objects.get_range("a/b", 10, 5) == b""
    assert objects.put_once("a/c", b"x") and objects.put_once("ab", b"yz")
    assert [(o.name, o.size) for o in objects.list("a/")] == [("a/b", 5), ("a/c", 1)]
    assert [o.name for o in objects.list("a")] == ["a/b", "a/c", "ab"]
    big = os.urandom(20 * MiB + 5)  # S3: a multipart upload
    assert objects.put_once("big/x", big) and not objects.put_once("big/x", b"")
    assert objects.get("big/x") == big
    assert objects.get_range("big/x", 20 * MiB, 10) == big[20 * MiB:]
    objects.delete("a/b")
    objects.delete("a/b")  # gone already: no error
    assert not objects.exists("a/b") and objects.exists("a/c")
    with pytest.raises(ObjectMissing):
        objects.get("a/b")
    with pytest.raises(ObjectMissing):
        objects.get_range("nope", 0, 1)
    for bad in ("", "/abs", "a//b", "../up", "a/./b"):
        with pytest.raises(StoreError):
            objects.put_once(bad, b"")
    assert objects.discard_partial() == 0
    assert [o.name for o in objects.list()] == ["a/c", "ab", "big/x"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_image_command(place: Place, tmp_path: Path) -> None:
    src = source_file(tmp_path / "disk.img", 1)
    code, text = cli("create", str(src), "--to", place.url, "--name", "one", "--json")
    assert code == 0, text
    first = json.loads(text)
    assert (first["new_chunks"], first["zero_chunks"]) == (6, 2)
    source_file(src, 1, changed=2)
    code, text = cli("create", str(src), "--to", place.url, "--name", "two", "--json")
    assert code == 0, text
    second = json.loads(text)
    assert (second["new_chunks"], second["reused_chunks"]) == (2, 4)
    code, text = cli("list", place.url, "--json")
    assert [i["name"] for i in json.loads(text)] == ["one", "two"]
    code, text = cli("verify", place.url, "--json")
    assert code == 0 and json.loads(text)["chunks"] == 8, text
    out = tmp_path / "out.img"
    code, text = cli("restore", place.url, "two", "--to", str(out), "--json")
    assert code == 0, text
    assert _sha(out) == _sha(src)
    code, text = cli("delete", place.url, "one", "--json")
    assert code == 0 and json.loads(text)["deleted"] == ["one"], text
    code, text = cli("prune", place.url, "--keep", "1", "--json")
    assert code == 0 and json.loads(text)["kept"] == ["two"], text
    code, text = cli("verify", place.url, "one")
    assert code == 2 and "no image 'one'" in text
    code, text = cli("list", place.url)
    assert code == 0 and "two" in text and "one " not in text


def _lock(place: Place, name: str, doc: dict[str, object]) -> None:
    place.objects().put_once(f"locks/{name}", json.dumps(doc).encode())


def test_locks_keep_delete_and_create_apart(place: Place, tmp_path: Path) -> None:
    src = source_file(tmp_path / "s.img", 2)
    clock = FixedClock()
    now = clock.ns
    create(str(src), place.url, "a", 1, None, False, NullProgress(), clock)
    objects = place.objects()
    far = now + 3600 * 10**9
    _lock(place, "create-elsewhere-1-ab.000003.json",
          {"host": "elsewhere", "pid": 1, "expires_ns": far})
    with pytest.raises(StoreError, match="busy: an image is being created by pid 1 on "
                                         "elsewhere"):
        prune(place.url, 1, NullProgress(), clock)
    objects.delete("locks/create-elsewhere-1-ab.000003.json")
    _lock(place, "exclusive-0000000007.000000.json",
          {"host": "elsewhere", "pid": 1, "expires_ns": far})
    with pytest.raises(StoreError, match="busy: images are being deleted"):
        create(str(src), place.url, "b", 1, None, False, NullProgress(), clock)
    with pytest.raises(StoreError, match="busy: images are being deleted"):
        prune(place.url, 1, NullProgress(), clock)
    # the holder on the other machine crashed: its lease runs out, then anyone may take it
    _lock(place, "exclusive-0000000007.000001.json",
          {"host": "elsewhere", "pid": 1, "expires_ns": clock.ns - 120 * 10**9})
    _lock(place, "create-gone-9-cd.000000.json",  # and a create that crashed
          {"host": "gone", "pid": 9, "expires_ns": clock.ns - 120 * 10**9})
    dead = {"host": socket.gethostname(), "pid": 2**22 + 7, "expires_ns": far}
    _lock(place, "create-here-2-ef.000000.json", dead)  # stale at once: its process is gone
    create(str(src), place.url, "b", 1, None, False, NullProgress(), clock)
    assert prune(place.url, 1, NullProgress(), clock).deleted == ["a"]
    assert [o.name for o in objects.list("locks/")] == ["locks/exclusive-0000000008.000001.json"]


def test_lease_is_renewed_and_released(place: Place) -> None:
    objects = place.objects()
    lease = Lease(objects, "locks/create-me-1-aa", FixedClock(), lease_s=0.4)
    assert lease.claim() and not Lease(objects, "locks/create-me-1-aa", FixedClock()).claim()
    lease.start()
    time.sleep(0.6)  # renewed every 0.1 s: newer records, the older ones deleted
    names = records(objects, "locks/")["locks/create-me-1-aa"]
    assert 1 <= len(names) <= 2 and not names[0].endswith(".000000.json")
    lease.check()
    lease.release(mark=False)
    assert objects.list("locks/") == []


def test_targets_parse() -> None:
    assert parse_target("/media/x") == "/media/x"
    assert parse_target("sftp://me@nas:2222/srv/backup") == \
        SftpTarget("nas", 2222, "me", None, "/srv/backup")
    assert parse_target("sftp://nas/~/backup") == SftpTarget("nas", None, None, None, "backup")
    assert parse_target("s3://bucket") == S3Target("bucket", "")
    assert parse_target("s3://bucket/a/b/") == S3Target("bucket", "a/b/")
    secret = parse_target("sftp://me:s3cret@nas/x")
    assert isinstance(secret, SftpTarget) and "s3cret" not in secret.url()
    assert describe_target("sftp://me:s3cret@nas/x") == "sftp://me:***@nas/x"
    for bad in ("ftp://x/y", "s3://B_ad/x", "sftp:///x", "sftp://h:99999/x"):
        with pytest.raises(UsageError):
            parse_target(bad)
