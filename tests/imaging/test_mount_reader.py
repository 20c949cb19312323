"""image/reader.py: any byte range of an image, read from its chunks, equals the source
where the image holds data and zeros elsewhere; a damaged chunk is an ImageDamaged
naming it, never wrong bytes (no root needed)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from tests.imaging.conftest import FixedClock, MiB, blank, store_files
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.errors import ImageDamaged
from twofold.image.manifest import Area
from twofold.image.reader import ImageReader
from twofold.image.repo import load_manifest, open_store


@pytest.fixture
def imaged(tmp_path: Path) -> tuple[bytes, Path]:
    """A raw volume (random and text stretches, zero cells) imaged into a store."""
    rng = random.Random(8)
    src = blank(tmp_path / "vol.img", 10 * MiB)
    with open(src, "r+b") as f:
        for offset in range(0, 10 * MiB, 3 * MiB):
            f.seek(offset)
            f.write(rng.randbytes(MiB) + b"twofold " * (MiB // 16))
    store = tmp_path / "store"
    store.mkdir()
    create(str(src), str(store), "v", 3, None, False, NullProgress(), FixedClock())
    return src.read_bytes(), store


def test_any_range_reads_as_the_source(imaged: tuple[bytes, Path]) -> None:
    raw, store = imaged
    chunks = open_store(str(store))
    m = load_manifest(chunks.objects, "v")
    for reader in (ImageReader(chunks, m), ImageReader(chunks, m, m.areas[0])):
        assert reader.size == len(raw)
        rng = random.Random(1)
        for _ in range(200):
            offset = rng.randrange(len(raw) + 10)
            length = rng.choice([1, 511, 4096, MiB, 3 * MiB + 7])
            assert reader.read(offset, length) == raw[offset:offset + length]
        assert reader.read(0, len(raw)) == raw


def _split(area: Area, at: int, chunk_size: int) -> tuple[Area, Area]:
    """`area` as two areas meeting at byte `at` (a multiple of the chunk size)."""
    cut = at // chunk_size
    low = [(o, min(o + n, at) - o) for o, n in area.extents if o < at]
    high = [(max(o, at) - at, o + n - max(o, at)) for o, n in area.extents if o + n > at]
    return (replace(area, size=at, extents=low,
                    chunks=[c for c in area.chunks if c.cell < cut]),
            replace(area, start=area.start + at, size=area.size - at, extents=high,
                    chunks=[replace(c, cell=c.cell - cut) for c in area.chunks
                            if c.cell >= cut]))


def test_areas_listed_out_of_disk_order_read_right(imaged: tuple[bytes, Path]) -> None:
    raw, store = imaged
    chunks = open_store(str(store))
    m = load_manifest(chunks.objects, "v")
    first, second = _split(m.areas[0], 4 * MiB, m.chunk_size)
    assert first.chunks and second.chunks
    reader = ImageReader(chunks, replace(m, areas=[second, first]))
    rng = random.Random(2)
    for _ in range(100):
        offset = rng.randrange(len(raw))
        length = rng.choice([1, 4096, MiB, 3 * MiB + 7])
        assert reader.read(offset, length) == raw[offset:offset + length]
    assert reader.read(0, len(raw)) == raw


def test_a_damaged_chunk_is_named_never_returned(imaged: tuple[bytes, Path]) -> None:
    raw, store = imaged
    chunks = open_store(str(store))
    m = load_manifest(chunks.objects, "v")
    cid = m.areas[0].chunks[0].id
    assert cid is not None
    loc = chunks.location(cid)
    assert loc is not None
    pack = next(p for p in store_files(store, ".pack") if p.name in loc.pack)
    data = bytearray(pack.read_bytes())
    data[loc.offset + loc.length // 2] ^= 1
    pack.write_bytes(bytes(data))
    reader = ImageReader(open_store(str(store)), m)
    with pytest.raises(ImageDamaged, match=cid.hex()):
        reader.read(0, 4096)
    with pytest.raises(ImageDamaged, match=cid.hex()):  # asked again: still named
        reader.read(100, 10)
    assert reader.read(3 * MiB, MiB) == raw[3 * MiB:4 * MiB]  # other chunks still read
    assert len(store_files(store, ".bad")) == 0 and not (store / "twofold-images" / "bad").exists()
