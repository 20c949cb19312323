"""write_durably writes a file of a MiB or more past the page cache (O_DIRECT) in whole
blocks and its last partial block through the cache, with the same bytes as a plain write
for every length around the alignment; a file system that refuses direct writes, at the
start or midway, gets the rest through the cache; any other error reaches the caller, and
the image store's put turns it into its own error with nothing left behind."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from tests.directio import WriteSpy, direct_write_folder
from tests.drives import foreign_drive
from twofold.blobs.objects import LocalObjects, StoreFullError
from twofold.fsinfo.blockio import DIRECT_ALIGN, DIRECT_WRITE_MIN, write_durably


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return direct_write_folder(tmp_path)


LENGTHS = [0, 1, DIRECT_ALIGN - 1, DIRECT_ALIGN, DIRECT_WRITE_MIN - 1, DIRECT_WRITE_MIN,
           DIRECT_WRITE_MIN + 1, DIRECT_WRITE_MIN + DIRECT_ALIGN, 3 * DIRECT_WRITE_MIN + 123]


@pytest.mark.parametrize("length", LENGTHS)
def test_the_whole_blocks_of_a_large_file_go_past_the_cache(
        folder: Path, length: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(length)
    spy = WriteSpy(monkeypatch)
    write_durably(str(folder / "f"), data)
    assert (folder / "f").read_bytes() == data
    direct = sum(n for d, n in spy.writes if d)
    if length >= DIRECT_WRITE_MIN:
        assert direct == length - length % DIRECT_ALIGN
        assert spy.writes[0][0]  # the blocks first, the tail after
        assert all(not d for d, _ in spy.writes[1:])
    else:
        assert direct == 0


def test_a_file_is_emptied_before_it_is_written(folder: Path) -> None:
    (folder / "f").write_bytes(b"old" * DIRECT_WRITE_MIN)
    data = os.urandom(DIRECT_WRITE_MIN + 5)
    write_durably(str(folder / "f"), data)
    assert (folder / "f").read_bytes() == data


def test_a_direct_write_refused_midway_finishes_through_the_cache(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(2 * DIRECT_WRITE_MIN + 77)
    spy = WriteSpy(monkeypatch)
    spy.fail, spy.fail_after = OSError(errno.EINVAL, "Invalid argument"), 3
    write_durably(str(folder / "f"), data)
    assert (folder / "f").read_bytes() == data
    assert [n for d, n in spy.writes if d] == [DIRECT_ALIGN] * 3
    assert sum(n for d, n in spy.writes if not d) == len(data) - 3 * DIRECT_ALIGN


def test_a_file_system_without_direct_io_is_written_through_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fcntl.fcntl

    def no_direct(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", no_direct)
    spy = WriteSpy(monkeypatch)
    data = os.urandom(DIRECT_WRITE_MIN * 2 + 1)
    write_durably(str(tmp_path / "f"), data)
    assert (tmp_path / "f").read_bytes() == data
    assert spy.writes and not any(d for d, _ in spy.writes)


def test_a_full_drive_during_a_direct_write_fails_the_put_and_leaves_nothing(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalObjects(folder / "store")
    store.put_once("marker", b"x")
    spy = WriteSpy(monkeypatch)
    spy.fail, spy.fail_after = OSError(errno.ENOSPC, "No space left on device"), 1
    with pytest.raises(StoreFullError):
        store.put_once("packs/ab/pack", os.urandom(4 * DIRECT_WRITE_MIN))
    assert [i.name for i in store.list()] == ["marker"]
    assert os.listdir(folder / "store" / ".tmp") == []


def test_a_pack_put_in_the_store_reads_back_whole(folder: Path) -> None:
    store = LocalObjects(folder / "store")
    data = os.urandom(5 * DIRECT_WRITE_MIN + 4321)
    assert store.put_once("packs/cd/pack", data)
    assert store.get("packs/cd/pack") == data
    assert not store.put_once("packs/cd/pack", b"other")
    assert store.get("packs/cd/pack") == data


@pytest.mark.parametrize("kind", ["fat32", "exfat", "ntfs"])
def test_a_fuse_drive_is_written_through_the_cache(
        tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """fusefat, asked for a buffered tail after direct writes, ran out of clusters on a
    nearly full drive: FUSE drivers get every byte the way they always did."""
    data = os.urandom(3 * DIRECT_WRITE_MIN + 99)
    with foreign_drive(kind, tmp_path, "64M") as mnt:
        spy = WriteSpy(monkeypatch)
        write_durably(str(mnt / "f"), data)
        monkeypatch.undo()
        assert (mnt / "f").read_bytes() == data
    assert spy.writes and not any(d for d, _ in spy.writes)
