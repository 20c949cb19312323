"""Damage and refusals: a flipped byte in a pack is named by verify and stops restore;
missing packs, a too-small or mounted destination, a dirty or mounted source."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from tests.image.conftest import IS_ROOT, loop_device, mounted, run
from twofold.core.progress import NullProgress
from twofold.fsinfo.blockio import FileReader
from twofold.image import restore as restore_module
from twofold.image.create import create
from twofold.image.errors import ImageDamaged, ImageRefused
from twofold.image.restore import restore
from twofold.image.verify import verify

from .conftest import NOT_ROOT, FixedClock, MiB, blank, partition_bounds, store_files


def _volume(path: Path, seed: int = 5, size: int = 12 * MiB) -> Path:
    """A raw volume (no file system): text-like and random stretches and zero cells."""
    rng = random.Random(seed)
    blank(path, size)
    with open(path, "r+b") as f:
        for offset in range(0, size, 3 * MiB):
            f.seek(offset)
            f.write(rng.randbytes(MiB) + b"twofold " * (MiB // 8))
    return path


@pytest.fixture
def imaged(tmp_path: Path) -> tuple[Path, Path]:
    src = _volume(tmp_path / "vol.img")
    target = tmp_path / "drive"
    target.mkdir()
    create(str(src), str(target), "img", 3, None, False, NullProgress(), FixedClock())
    return src, target


def test_flipped_byte_found_by_verify_and_stops_restore(imaged: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    _src, target = imaged
    pack = store_files(target, ".pack")[0]
    data = bytearray(pack.read_bytes())
    data[len(data) // 3] ^= 0x40  # inside a compressed chunk
    pack.write_bytes(bytes(data))
    out = tmp_path / "out.img"
    with pytest.raises(ImageDamaged, match=r"image img is damaged in volume, bytes \d+-\d+"):
        restore(str(target), "img", str(out), None, NullProgress(), FixedClock())
    result = verify(str(target), "img", NullProgress(), FixedClock())
    assert len(result.damages) == 1
    damage = result.damages[0]
    assert damage.image == "img" and damage.area == "volume"
    assert damage.end - damage.start <= MiB
    assert f"bytes {damage.start}-{damage.end}" in str(damage)
    assert "found damaged before" in damage.message  # the restore recorded it
    out.unlink()
    with pytest.raises(ImageDamaged, match=r"(?s)1 found damaged before.*nothing was written"):
        restore(str(target), "img", str(out), None, NullProgress(), FixedClock())
    assert not out.exists()


def test_missing_pack_refused_before_writing(imaged: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    _src, target = imaged
    for pack in store_files(target, ".pack"):
        pack.unlink()
    assert verify(str(target), None, NullProgress(), FixedClock()).damages
    with pytest.raises(ImageDamaged, match="nothing was written"):
        restore(str(target), "img", str(tmp_path / "o.img"), None, NullProgress(),
                FixedClock())
    assert not (tmp_path / "o.img").exists()


def test_smaller_destination_refused(imaged: tuple[Path, Path], tmp_path: Path) -> None:
    src, target = imaged
    small = blank(tmp_path / "small.img", src.stat().st_size - MiB)
    with pytest.raises(ImageRefused, match=f"needs {src.stat().st_size:,} .*1,048,576 more"):
        restore(str(target), "img", str(small), None, NullProgress(), FixedClock())


def test_dirty_ext4_refused_unless_forced(tmp_path: Path) -> None:
    vol = blank(tmp_path / "ext.img", 16 * MiB)
    run("mkfs.ext4", "-q", "-F", vol)
    run("debugfs", "-w", "-R", "ssv state 0", vol)
    target = tmp_path / "drive"
    target.mkdir()
    with pytest.raises(ImageRefused, match="marked dirty: the file system was not cleanly"):
        create(str(vol), str(target), "d", 3, None, False, NullProgress(), FixedClock())
    assert not list(target.rglob("images/*.json"))
    r = create(str(vol), str(target), "d", 3, None, True, NullProgress(), FixedClock())
    assert r.used_bytes < 16 * MiB


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason=NOT_ROOT)
def test_mounted_source_and_destination_refused(gpt_disk: Path, tmp_path: Path) -> None:
    target = tmp_path / "drive"
    target.mkdir()
    create(str(gpt_disk), str(target), "x", 1, None, False, NullProgress(), FixedClock())
    start, _size = partition_bounds(gpt_disk)[2]
    copy = tmp_path / "disk.img"
    run("cp", "--sparse=always", gpt_disk, copy)
    with loop_device(copy) as dev:
        run("partx", "-a", dev, check=False)
        # a mounted ext4 or FAT is imaged at file level now (test_live.py); NTFS cannot be
        with mounted(["ntfs-3g", f"{dev}p3"], tmp_path / "m"):
            with pytest.raises(ImageRefused, match=r"mounted read-write(.|\n)*rescue media"):
                create(dev, str(target), "y", 3, None, False, NullProgress(), FixedClock())
            with pytest.raises(ImageRefused, match="mounted read-write"):
                create(str(copy), str(target), "y", 3, None, False, NullProgress(),
                       FixedClock())
            with pytest.raises(ImageRefused, match="cannot restore to"):
                restore(str(target), "x", dev, None, NullProgress(), FixedClock())
        run("partx", "-d", dev, check=False)
    assert start > 0


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason=NOT_ROOT)
def test_active_swap_destination_refused(imaged: tuple[Path, Path], tmp_path: Path) -> None:
    _src, target = imaged
    swap = blank(tmp_path / "swap.img", 16 * MiB)
    with loop_device(swap) as dev:
        run("mkswap", dev)
        if run("swapon", dev, check=False).returncode:
            pytest.skip("swapon is not allowed here")
        try:
            with pytest.raises(ImageRefused, match="in use as swap"):
                restore(str(target), "img", dev, None, NullProgress(), FixedClock())
        finally:
            run("swapoff", dev, check=False)


def test_readback_finds_a_write_that_did_not_stick(imaged: tuple[Path, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _src, target = imaged
    real_pwrite = os.pwrite
    calls = []

    def bad_pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        calls.append(offset)
        if len(calls) == 2:  # the device silently drops a byte of the second write
            data = bytes(data[:-1]) + bytes([data[-1] ^ 1])
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", bad_pwrite)
    with pytest.raises(ImageDamaged, match="does not hold what was written to volume, bytes"):
        restore(str(target), "img", str(tmp_path / "o.img"), None, NullProgress(),
                FixedClock())
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    r = restore(str(target), "img", str(tmp_path / "p.img"), None, NullProgress(),
                FixedClock())
    assert r.bytes_checked == r.bytes_written > 0


def test_readback_names_the_read_error(imaged: tuple[Path, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A destination that fails when read back: the error says how, not only that its
    bytes differ."""
    _src, target = imaged
    dest = tmp_path / "o.img"

    class Failing(FileReader):
        def read_into(self, buf: memoryview, offset: int, aligned: bool = True) -> int:
            if offset >= 4 * MiB:  # the read-back of the second cell on
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return super().read_into(buf, offset, aligned=aligned)

    monkeypatch.setattr(restore_module, "FileReader", Failing)
    with pytest.raises(ImageDamaged, match=r"o\.img could not be read back after writing "
                       r"volume, bytes \d+-\d+: Input/output error at byte \d+"):
        restore(str(target), "img", str(dest), None, NullProgress(), FixedClock())
