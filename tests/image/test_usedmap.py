"""Range arithmetic of UsedMap (bitmap expansion, merging) and detection of volumes we
do not read, which must come back as None so the caller reads them whole."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from twofold.fsinfo.blockio import BytesReader, FileReader, SliceReader
from twofold.fsinfo.fsbitmap import detect, merge_extents, used_ranges
from twofold.fsinfo.fsbitmap.usedmap import bitmap_extents

from .conftest import run


def _naive(bits: np.ndarray, unit: int, base: int) -> tuple[tuple[int, int], ...]:
    return merge_extents((base + int(i) * unit, unit) for i in np.flatnonzero(bits))


def test_bitmap_extents_match_bit_by_bit_reference() -> None:
    rng = np.random.default_rng(5)
    # just over 4 MiB of bitmap crosses the 4 MiB expansion slice; a run straddles the seam
    bits = np.zeros((4 * (1 << 20) + 4096) * 8, dtype=np.uint8)
    for start in rng.integers(0, bits.size - 2000, 100):
        bits[start : start + int(rng.integers(1, 2000))] = 1
    seam = 4 * (1 << 20) * 8
    bits[seam - 10 : seam + 10] = 1
    packed = np.packbits(bits, bitorder="little")
    nbits = bits.size - 3  # a count that is not a multiple of 8
    got = tuple(bitmap_extents(packed, nbits, 4096, 1024))
    assert got == _naive(bits[:nbits], 4096, 1024)
    assert any(s < seam * 4096 < s + n for s, n in got)


@pytest.mark.parametrize("seed", range(20))
def test_bitmap_extents_of_mixed_bytes_match_the_reference(seed: int) -> None:
    # bytes of every kind side by side: free, full, and mixed ones of one, several or no
    # runs reaching their edges, so runs join across bytes and across full stretches
    rng = random.Random(seed)
    choices = [0x00, 0xFF, 0x01, 0x80, 0x81, 0x7E, 0xF0, 0x0F, 0x55, 0xAA, 0xFE, 0x7F]
    packed = bytes(rng.choice(choices) if rng.random() < 0.7 else rng.randrange(256)
                   for _ in range(rng.randrange(1, 400)))
    nbits = len(packed) * 8 - rng.randrange(8)
    bits = np.unpackbits(np.frombuffer(packed, np.uint8), bitorder="little")[:nbits]
    assert tuple(bitmap_extents(packed, nbits, 512, 7)) == _naive(bits, 512, 7)
    assert tuple(bitmap_extents(bytearray(packed), nbits, 512, 7)) == _naive(bits, 512, 7)


def test_bitmap_extents_ignore_bits_past_the_end() -> None:
    assert bitmap_extents(b"\xff\xff", 12, 1) == [(0, 12)]
    assert bitmap_extents(b"\x00\xf0", 12, 1) == []
    with pytest.raises(ValueError):
        bitmap_extents(b"\xff", 9, 1)


def test_merge_extents_joins_touching_and_clips() -> None:
    ranges = [(10, 5), (0, 10), (30, 10), (12, 2), (100, 50), (-5, 3)]
    assert merge_extents(ranges, limit=120) == ((0, 15), (30, 10), (100, 20))


@pytest.mark.parametrize("fill", ["zeros", "random", "swap"])
def test_unknown_volumes_are_not_claimed(fill: str, tmp_path: Path) -> None:
    image = tmp_path / "vol.img"
    size = 16 << 20
    if fill == "random":
        image.write_bytes(random.Random(1).randbytes(size))
    else:
        with open(image, "wb") as f:
            f.truncate(size)
        if fill == "swap":
            run("mkswap", image)
    with FileReader(image) as reader:
        assert detect(reader) is None
        assert used_ranges(reader) is None


def test_slice_reader_stays_inside_its_window() -> None:
    base = BytesReader(bytes(range(256)) * 4)
    window = SliceReader(base, 100, 50)
    assert window.pread(0, 4) == bytes([100, 101, 102, 103])
    assert window.pread(45, 10) == bytes(range(145, 150))
    assert window.pread(50, 10) == b""
