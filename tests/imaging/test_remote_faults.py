"""Many writers and network faults on real servers: two processes imaging into one S3
store at once (one killed and run again), the S3 gateway stopped in the middle of a
create, an SSH connection cut mid-run, an unfinished multipart upload resumed, and
credentials kept out of every message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import twofold.blobs.s3 as s3_module
from twofold.blobs.objects import StoreError
from twofold.blobs.s3 import PART_SIZE
from twofold.core.models import Issue
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.manage import list_images
from twofold.image.repo import all_manifests, open_store
from twofold.image.verify import verify

from .conftest import FixedClock, MiB, Place, make_place
from .servers import Ceph, Sshd


def _random(path: Path, mib: int, seed: int) -> Path:
    import random

    path.write_bytes(random.Random(seed).randbytes(mib * MiB))
    return path


def _twofold(place: Place, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "twofold", "image", *args],
                            env={**os.environ, **place.env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_pack(ceph: Ceph, bucket: str, proc: subprocess.Popen[str],
                   freeze: bool = False) -> None:
    """Return once proc's first pack upload shows in the bucket; with freeze, proc is
    stopped (SIGSTOP) at that moment, so what the test does next happens before proc
    can finish, however fast this machine compresses and uploads."""
    client = ceph.client()
    deadline = time.monotonic() + 60
    while proc.poll() is None:
        listed = client.list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
        ups = client.list_multipart_uploads(Bucket=bucket)  # type: ignore[attr-defined]
        if ups.get("Uploads") or any(o["Key"].endswith(".pack")
                                     for o in listed.get("Contents", [])):
            if freeze:
                proc.send_signal(signal.SIGSTOP)
            return
        assert time.monotonic() < deadline, "no upload began within a minute"
        time.sleep(0.02)


def test_two_writers_one_killed_and_rerun(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = make_place("s3", request, tmp_path / "s3", monkeypatch)
    ceph: Ceph = request.getfixturevalue("ceph")
    bucket = s3.url[5:].split("/")[0]
    a = _random(tmp_path / "a.img", 24, 1)
    b = _random(tmp_path / "b.img", 96, 2)
    first = _twofold(s3, "create", str(a), "--to", s3.url, "--name", "a", "--json")
    # b compresses slowly (zstd 15: about 40 MiB/s here), so it is still uploading well
    # after its first pack shows; at level 6 it could finish before the kill landed
    second = _twofold(s3, "create", str(b), "--to", s3.url, "--name", "b", "--compression",
                      "15", "--json")
    _wait_for_pack(ceph, bucket, second)
    second.send_signal(signal.SIGKILL)
    second.wait()
    assert second.returncode == -signal.SIGKILL, "b finished before it was killed"
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert [i.name for i in list_images(s3.url)] == ["a"]
    again = _twofold(s3, "create", str(b), "--to", s3.url, "--name", "b", "--json")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert json.loads(out)["new_chunks"] + json.loads(out)["reused_chunks"] == 96
    assert not verify(s3.url, None, NullProgress(), FixedClock()).damages
    # what the killed run left (its lease, unfinished uploads) goes with the next prune,
    # and the store then holds nothing but the two images and the chunks they use
    assert _twofold(s3, "prune", s3.url, "--keep", "2").wait(60) == 0
    store = open_store(s3.url)
    used = set().union(*(m.chunk_ids() for m in all_manifests(store.objects)))
    assert used == set(store.index)
    assert all(e.chunk_id in used for entries in store.packs.values() for e in entries)
    client = ceph.client()
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")  # type: ignore[attr-defined]
    assert [o.name for o in store.objects.list("locks/")] == \
        ["locks/exclusive-0000000001.000001.json"]


def test_gateway_stopped_during_create(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = make_place("s3", request, tmp_path / "s3", monkeypatch)
    ceph: Ceph = request.getfixturevalue("ceph")
    src = _random(tmp_path / "d.img", 96, 3)
    child = _twofold(s3, "create", str(src), "--to", s3.url, "--name", "d",
                     "--compression", "15")
    # a 96 MiB image makes three 32 MiB packs, each sent in one PUT, so a pack shows only
    # once it is whole. At zstd 6 all three could land together and the create finish
    # before the gateway went (CI saw exit 0); zstd 15 (about 40 MiB/s here) spreads them
    # out, and the child is frozen the moment the first shows until the gateway is gone
    _wait_for_pack(ceph, s3.url[5:].split("/")[0], child, freeze=True)
    assert child.poll() is None, "the create finished before its first pack was seen"
    ceph.stop_gateway()
    child.send_signal(signal.SIGCONT)
    try:
        _out, err = child.communicate(timeout=120)
    finally:
        ceph.start_gateway()
    assert child.returncode == 1, err
    assert "is not answering" in err and "gave up after 5 s of retries" in err
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in err
    assert list_images(s3.url) == []  # nothing half-listed
    again = create(str(src), s3.url, "d", 6, None, False, NullProgress(), FixedClock())
    assert again.new_chunks + again.reused_chunks == 96
    assert not verify(s3.url, "d", NullProgress(), FixedClock()).damages


class CutConnection(NullProgress):
    """Kills the sshd processes serving our connection once, part-way through."""

    def __init__(self, server: Sshd, after: int) -> None:
        self.server, self.after, self.done, self.killed = server, after, 0, 0

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        self.done += nbytes
        if self.after and self.done >= self.after:
            self.after = 0
            for pid in os.listdir("/proc"):
                if pid.isdigit() and _parent(pid) == self.server.proc.pid:
                    os.kill(int(pid), signal.SIGKILL)
                    self.killed += 1

    def issue(self, issue: Issue) -> None:
        raise AssertionError(issue.message)


def _parent(pid: str) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def test_ssh_connection_cut_is_retried(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sftp = make_place("sftp", request, tmp_path / "sftp", monkeypatch)
    server: Sshd = request.getfixturevalue("sshd")
    src = _random(tmp_path / "e.img", 48, 4)
    cut = CutConnection(server, 20 * MiB)
    r = create(str(src), sftp.url, "e", 1, None, False, cut, FixedClock())
    assert cut.killed >= 1 and r.new_chunks == 48
    assert not verify(sftp.url, "e", NullProgress(), FixedClock()).damages


def test_credentials_stay_out_of_messages(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = make_place("s3", request, tmp_path / "s3", monkeypatch)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-0123456789")
    with pytest.raises(StoreError) as caught:
        list_images(s3.url)
    assert "not-the-secret" not in str(caught.value) and "refused" in caught.value.message
    server: Sshd = request.getfixturevalue("sshd")
    url = f"sftp://{server.user}:hunter22@127.0.0.1:{server.port}{tmp_path}"
    config = tmp_path / "ssh_config"  # the server's host key, but not our key: a password
    config.write_text(f"Host *\n  UserKnownHostsFile {server.config.parent}/known_hosts\n")
    monkeypatch.setenv("TWOFOLD_SSH_CONFIG", str(config))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* either
    with pytest.raises(StoreError) as caught:
        list_images(url)
    assert "refused the login" in caught.value.message
    assert "hunter22" not in str(caught.value) and "sftp://" in caught.value.message


def test_unfinished_upload_is_resumed(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = make_place("s3", request, tmp_path / "s3", monkeypatch)
    ceph: Ceph = request.getfixturevalue("ceph")
    monkeypatch.setattr(s3_module, "MULTIPART_ABOVE", 2 * PART_SIZE)  # keep the test small
    objects = s3.objects()
    bucket, key = s3.url[5:].split("/")[0], "s3/twofold-images/packs/p.pack"
    data = os.urandom(3 * PART_SIZE + 100)
    client = ceph.client()
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
    for number, body in ((1, data[:PART_SIZE]), (2, b"not what the pack holds")):
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"],  # type: ignore[attr-defined]
                           PartNumber=number, Body=body)
    assert objects.put_once("packs/p.pack", data)  # part 1 kept, part 2 sent again
    assert objects.get("packs/p.pack") == data
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")  # type: ignore[attr-defined]


def test_pack_goes_in_one_conditional_put(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = make_place("s3", request, tmp_path / "s3", monkeypatch)
    ceph: Ceph = request.getfixturevalue("ceph")
    objects = s3.objects()
    bucket, key = s3.url[5:].split("/")[0], "s3/twofold-images/packs/big.pack"
    data = os.urandom(32 * MiB)  # a full pack: one PUT, not parts
    assert objects.put_once("packs/big.pack", data)
    assert not objects.put_once("packs/big.pack", os.urandom(32 * MiB))  # If-None-Match
    etag = ceph.client().head_object(Bucket=bucket, Key=key)["ETag"]  # type: ignore[attr-defined]
    assert "-" not in etag  # a multipart upload's ETag ends in -<parts>
    assert objects.get("packs/big.pack") == data
    small = b'{"version": 1}'
    assert objects.put_once("images/m.json", small)  # with a Content-MD5 the server checks
    assert objects.get("images/m.json") == small
