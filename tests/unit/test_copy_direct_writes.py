"""copy_file writes the copy of a file of a MiB or more past the page cache (O_DIRECT) in
whole blocks and its last partial piece through the cache, with the same bytes and hash
as before; a small file, a sparse one and a copy onto a FUSE drive go through the cache;
a write refused or cut short midway finishes through the cache; and an open file handed
in by the caller comes back without O_DIRECT."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import blake3
import pytest

from tests.directio import WriteSpy, direct_write_folder
from tests.drives import foreign_drive
from twofold.fsinfo.blockio import DIRECT_ALIGN, DIRECT_WRITE_MIN
from twofold.sets.copy import BUF, copy_file


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return direct_write_folder(tmp_path)


def _copy(folder: Path, data: bytes) -> bytes:
    (folder / "src").write_bytes(data)
    copied = copy_file(bytes(folder / "src"), bytes(folder / "dst"))
    assert copied.hash == blake3.blake3(data).digest()
    assert copied.size == len(data)
    return (folder / "dst").read_bytes()


@pytest.mark.parametrize("length", [DIRECT_WRITE_MIN, DIRECT_WRITE_MIN + 1,
                                    DIRECT_WRITE_MIN + DIRECT_ALIGN, 3 * BUF + 123])
def test_a_large_file_is_copied_past_the_cache_but_its_tail(
        folder: Path, length: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(length)
    spy = WriteSpy(monkeypatch)
    assert _copy(folder, data) == data
    whole = length - length % DIRECT_ALIGN
    assert sum(n for d, n in spy.writes if d) == whole
    assert sum(n for d, n in spy.writes if not d) == length - whole
    assert all(n % DIRECT_ALIGN == 0 for d, n in spy.writes if d)


@pytest.mark.parametrize("length", [1, DIRECT_ALIGN, DIRECT_WRITE_MIN - 1])
def test_a_small_file_is_copied_through_the_cache(
        folder: Path, length: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(length)
    spy = WriteSpy(monkeypatch)
    assert _copy(folder, data) == data
    assert spy.writes and not any(d for d, _ in spy.writes)


def test_a_sparse_file_keeps_its_holes_and_goes_through_the_cache(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = folder / "src"
    with open(src, "wb") as f:
        f.seek(8 * BUF)
        f.write(b"end")
    if os.stat(src).st_blocks * 512 >= 8 * BUF:
        pytest.skip("this file system does not keep holes")
    spy = WriteSpy(monkeypatch)
    copy_file(bytes(src), bytes(folder / "dst"))
    monkeypatch.undo()
    assert (folder / "dst").read_bytes() == src.read_bytes()
    assert os.stat(folder / "dst").st_blocks * 512 < BUF
    assert spy.writes and not any(d for d, _ in spy.writes)


@pytest.mark.parametrize("short", [0, 1])
def test_a_direct_write_refused_or_cut_short_finishes_through_the_cache(
        folder: Path, short: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 * BUF + 77)
    spy = WriteSpy(monkeypatch)
    spy.fail, spy.fail_after = OSError(errno.EINVAL, "Invalid argument"), short
    assert _copy(folder, data) == data
    assert [n for d, n in spy.writes if d] == [DIRECT_ALIGN] * short
    assert sum(n for d, n in spy.writes if not d) == len(data) - short * DIRECT_ALIGN


def test_another_write_error_reaches_the_caller(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "src").write_bytes(os.urandom(2 * BUF))
    spy = WriteSpy(monkeypatch)
    spy.fail = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError) as caught:
        copy_file(bytes(folder / "src"), bytes(folder / "dst"))
    assert caught.value.errno == errno.ENOSPC


def test_a_file_handed_in_open_comes_back_without_o_direct(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(2 * BUF)  # whole blocks: no tail turns O_DIRECT off on the way
    (folder / "src").write_bytes(data)
    spy = WriteSpy(monkeypatch)
    fd = os.open(folder / "dst", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        copy_file(bytes(folder / "src"), fd)
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
        assert os.write(fd, b"!") == 1  # a caller's unaligned write still works
    finally:
        os.close(fd)
    assert (folder / "dst").read_bytes() == data + b"!"
    assert any(d for d, _ in spy.writes)


@pytest.mark.parametrize("kind", ["fat32", "exfat"])
def test_a_copy_onto_a_fuse_drive_goes_through_the_cache(
        tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 * BUF + 99)
    (tmp_path / "src").write_bytes(data)
    with foreign_drive(kind, tmp_path, "64M") as mnt:
        spy = WriteSpy(monkeypatch)
        copy_file(bytes(tmp_path / "src"), bytes(mnt / "dst"))
        monkeypatch.undo()
        assert (mnt / "dst").read_bytes() == data
    assert spy.writes and not any(d for d, _ in spy.writes)
