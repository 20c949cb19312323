"""Encrypted image stores over the network: SFTP to a real sshd and S3 on the real Ceph
gateway (tests/imaging/servers.py) go through every image command, show no plaintext in
their raw objects, and refuse a wrong passphrase without writing."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.blobs.objects import ObjectStore
from twofold.cli.app import app

from .conftest import MiB, Place, make_place

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["image", *args])
    return result.exit_code, result.output


def raw(objects: ObjectStore) -> dict[str, bytes]:
    """Every object's name and stored bytes, as the server holds them."""
    return {o.name: objects.get(o.name) for o in objects.list()}


@pytest.fixture(params=["sftp", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Place:
    """An empty SFTP or S3 (Ceph) target; TWOFOLD_PASSPHRASE set."""
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", "a long passphrase for the offsite store")
    return make_place(request.param, request, tmp_path / "secret-target", monkeypatch)


def test_encrypted_remote_store(remote: Place, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(21)
    src = tmp_path / "private-disk.img"
    body = rnd.randbytes(3 * MiB) + b"the known plaintext\n" * 60_000 + bytes(MiB)
    src.write_bytes(body)
    code, text = cli("create", str(src), "--to", remote.url, "--name", "one", "--encrypt",
                     "--json")
    assert code == 0, text
    assert json.loads(text)["new_chunks"] == 5
    code, text = cli("create", str(src), "--to", remote.url, "--name", "two", "--json")
    assert code == 0 and json.loads(text)["reused_chunks"] == 5, text
    stored = raw(remote.objects())
    assert any(n.startswith("keys/") for n in stored)
    everything = b"".join(n.encode() + data for n, data in stored.items())
    for needle in (b"private-disk", b"known plaintext", body[1000:1064], body[2 * MiB:][:64]):
        assert needle not in everything
    code, text = cli("list", remote.url, "--json")
    assert code == 0 and [i["name"] for i in json.loads(text)] == ["one", "two"]
    code, text = cli("verify", remote.url, "--json")
    assert code == 0 and json.loads(text)["chunks"] == 5, text
    out = tmp_path / "out.img"
    code, text = cli("restore", remote.url, "two", "--to", str(out))
    assert code == 0, text
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(body).digest()
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", "not the passphrase")
    for args in (("create", str(src), "--to", remote.url, "--name", "three"),
                 ("delete", remote.url, "one"), ("list", remote.url)):
        code, text = cli(*args)
        assert code == 1 and "wrong passphrase for the encrypted store" in text, text
    assert raw(remote.objects()) == stored
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", "a long passphrase for the offsite store")
    code, text = cli("delete", remote.url, "one", "--json")
    assert code == 0 and json.loads(text)["deleted"] == ["one"], text
    code, text = cli("prune", remote.url, "--keep", "1", "--json")
    assert code == 0 and json.loads(text)["kept"] == ["two"], text


def test_an_encrypted_drive_copies_offsite_sealed(remote: Place, tmp_path: Path) -> None:
    src = tmp_path / "private-disk.img"
    body = random.Random(22).randbytes(2 * MiB) + b"the known plaintext\n" * 60_000
    src.write_bytes(body)
    drive = tmp_path / "drive"
    drive.mkdir()
    assert cli("create", str(src), "--to", str(drive), "--name", "one", "--encrypt")[0] == 0
    code, text = cli("copy", str(drive), remote.url, "--json")
    assert code == 0 and json.loads(text)["copied"] == ["one"], text
    stored = raw(remote.objects())
    assert any(n.startswith("keys/") for n in stored)
    assert b"known plaintext" not in b"".join(stored.values())
    out = tmp_path / "out.img"
    code, text = cli("restore", remote.url, "one", "--to", str(out))
    assert code == 0, text
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(body).digest()
