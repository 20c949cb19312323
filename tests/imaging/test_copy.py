"""`image copy`: only the chunks the destination lacks are sent, between every kind of
store; an interrupted copy resumes; a damaged source chunk is never listed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from twofold.blobs.metered import Metered
from twofold.blobs.objects import ObjectStore, StoreError
from twofold.blobs.remote import open_target
from twofold.core.progress import NullProgress
from twofold.image.copy import copy
from twofold.image.create import create
from twofold.image.errors import ImageDamaged
from twofold.image.manage import list_images
from twofold.image.verify import verify

from .conftest import FixedClock, MiB, make_place, store_files
from .test_targets import cli, source_file


class FailingPuts(Metered):
    """A store that fails every put of a pack after the first `packs` (a link that goes
    down in the middle of a copy)."""

    def __init__(self, inner: ObjectStore, packs: int) -> None:
        super().__init__(inner)
        self.packs = packs

    def put_once(self, name: str, data: bytes) -> bool:
        if name.endswith(".pack"):
            if self.packs == 0:
                raise StoreError("the link went down")
            self.packs -= 1
        return super().put_once(name, data)


def _two_images(drive: Path, tmp_path: Path) -> None:
    src = source_file(tmp_path / "disk.img", 5)
    clock = FixedClock()
    create(str(src), str(drive), "one", 3, None, False, NullProgress(), clock)
    source_file(src, 5, changed=2)
    create(str(src), str(drive), "two", 3, None, False, NullProgress(), clock)


def test_copy_sends_only_what_the_destination_lacks(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drive = tmp_path / "drive"
    drive.mkdir()
    _two_images(drive, tmp_path)
    s3 = make_place("s3", request, tmp_path / "s3", monkeypatch)
    sftp = make_place("sftp", request, tmp_path / "sftp", monkeypatch)
    code, text = cli("copy", str(drive), s3.url, "one", "--json")
    assert code == 0, text
    first = json.loads(text)
    assert (first["copied"], first["chunks_sent"], first["chunks_checked"]) == (["one"], 6, 6)
    code, text = cli("copy", str(drive), s3.url, "--json")  # "two": only its 2 new chunks
    second = json.loads(text)
    assert code == 0 and second["copied"] == ["two"] and second["skipped"] == ["one"], text
    assert (second["chunks_sent"], second["chunks_present"]) == (2, 4)
    code, text = cli("copy", s3.url, sftp.url)  # onwards, from S3 to SFTP
    assert code == 0 and "Copied 2 images: one, two" in text, text
    code, text = cli("copy", s3.url, sftp.url)
    assert code == 0 and "Copied 0 images; 2 already there" in text, text
    for place in (s3, sftp):
        assert [i.name for i in list_images(place.url)] == ["one", "two"]
        assert not verify(place.url, None, NullProgress(), FixedClock()).damages
    out = tmp_path / "out.img"
    code, text = cli("restore", sftp.url, "two", "--to", str(out))
    assert code == 0 and out.read_bytes() == (tmp_path / "disk.img").read_bytes()


def test_interrupted_copy_resumes(tmp_path: Path) -> None:
    src = tmp_path / "big.img"
    src.write_bytes(os.urandom(40 * MiB))  # incompressible: two packs
    drive, dest = tmp_path / "drive", tmp_path / "dest"
    drive.mkdir()
    dest.mkdir()
    create(str(src), str(drive), "big", 1, None, False, NullProgress(), FixedClock())
    failing = FailingPuts(open_target(str(dest)), packs=1)
    with pytest.raises(StoreError, match="the link went down"):
        copy(str(drive), failing, None, NullProgress(), FixedClock())
    assert not list_images(str(dest)) and len(store_files(dest, ".pack")) == 1
    again = copy(str(drive), str(dest), None, NullProgress(), FixedClock())
    assert again.copied == ["big"] and again.chunks_present >= 30
    assert again.chunks_sent + again.chunks_present == 40
    assert not verify(str(dest), "big", NullProgress(), FixedClock()).damages


def test_copy_refuses_a_damaged_source(tmp_path: Path) -> None:
    drive, dest = tmp_path / "drive", tmp_path / "dest"
    drive.mkdir()
    dest.mkdir()
    _two_images(drive, tmp_path)
    pack = store_files(drive, ".pack")[0]
    with open(pack, "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 16)
    with pytest.raises(ImageDamaged, match="fails its check"):
        copy(str(drive), str(dest), ["one"], NullProgress(), FixedClock())
    assert not list_images(str(dest))
