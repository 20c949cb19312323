"""Golden test: a tiny deterministic MBR disk is imaged and the manifest must match the
checked-in one byte for byte; the pack is read back by a restorer written from
docs/FORMAT.md alone (struct, zstd, blake3; no twofold code) and must give the disk back.
Set TWOFOLD_GOLDEN_UPDATE=1 to rewrite the expected files after a deliberate change."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import blake3
import zstandard

from twofold.core.progress import NullProgress
from twofold.image.create import create

from .conftest import FixedClock, MiB, store_files

GOLDEN = Path(__file__).parent / "golden"
DISK_SIZE = 13 * MiB


def tiny_disk(path: Path) -> bytes:
    """13 MiB: MBR with boot code, one type-0x83 partition from 1 MiB holding no file
    system we read (so it is read whole): text, a zero cell, then counting bytes."""
    disk = bytearray(DISK_SIZE)
    disk[0:440] = bytes((i * 7) & 0xFF for i in range(440))
    disk[440:444] = b"\x78\x56\x34\x12"
    entry = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048,
                        (DISK_SIZE - MiB) // 512)
    disk[446:462] = entry
    disk[510:512] = b"\x55\xaa"
    part = MiB
    disk[part + 4096:part + 4096 + 3 * MiB] = (b"twofold golden " * (3 * MiB // 15 + 1))[:3 * MiB]
    tail = part + 12 * MiB - 2 * MiB
    disk[tail:tail + 2 * MiB] = bytes(i & 0xFF for i in range(2 * MiB))
    path.write_bytes(bytes(disk))
    return bytes(disk)


def third_party_restore(store: Path, manifest: dict[str, object]) -> bytes:
    """Rebuild the disk from the store as docs/FORMAT.md describes it."""
    index: dict[bytes, tuple[Path, int, int, int]] = {}
    for pack in sorted(store.rglob("*.pack")):
        data = pack.read_bytes()
        assert data[:8] == b"TFPACK01"
        index_offset, count, crc, magic = struct.unpack("<QII8s", data[-24:])
        assert magic == b"TFPKEND1" and index_offset + count * 48 + 24 == len(data)
        raw = data[index_offset:index_offset + count * 48]
        assert zlib.crc32(raw) == crc
        for i in range(count):
            cid, offset, length, plain = struct.unpack_from("<32sQII", raw, i * 48)
            index[cid] = (pack, offset, length, plain)
    size = manifest["size"]
    assert isinstance(size, int)
    out = bytearray(size)
    chunk_size = manifest["chunk_size"]
    assert isinstance(chunk_size, int)
    areas = manifest["areas"]
    assert isinstance(areas, list)
    for area in areas:
        by_cell: dict[int, list[tuple[int, int]]] = {}
        for offset, length in area["extents"]:
            pos, end = offset, offset + length
            while pos < end:
                cell = pos // chunk_size
                stop = min(end, (cell + 1) * chunk_size)
                by_cell.setdefault(cell, []).append((pos, stop - pos))
                pos = stop
        for cell, plain_length, hex_id in area["chunks"]:
            pieces = by_cell[cell]
            if hex_id is None:
                data = bytes(plain_length)
            else:
                pack, offset, length, plain = index[bytes.fromhex(hex_id)]
                stored = pack.read_bytes()[offset:offset + length]
                data = zstandard.ZstdDecompressor().decompress(stored, max_output_size=plain)
                assert blake3.blake3(data).hexdigest() == hex_id
            assert len(data) == plain_length == sum(n for _, n in pieces)
            pos = 0
            for offset, length in pieces:
                start = area["start"] + offset
                out[start:start + length] = data[pos:pos + length]
                pos += length
    return bytes(out)


def test_golden_manifest_and_pack(tmp_path: Path) -> None:
    source = tmp_path / "tiny.img"
    disk = tiny_disk(source)
    target = tmp_path / "drive"
    target.mkdir()
    clock = FixedClock()
    clock.now_ns = lambda: 1_767_225_600_000_000_000  # type: ignore[method-assign]
    create(str(source), str(target), "golden", 3, None, False, NullProgress(), clock)
    store = target / "twofold-images"
    manifest_bytes = (store / "images/golden.json").read_bytes()
    manifest_bytes = manifest_bytes.replace(json.dumps(str(source)).encode(), b'"SOURCE"')
    packs = store_files(target, ".pack")
    assert len(packs) == 1
    pack_hash = blake3.blake3(packs[0].read_bytes()).hexdigest()
    zstd_version = ".".join(map(str, zstandard.ZSTD_VERSION))
    expected_pack = {"zstd": zstd_version, "pack_blake3": pack_hash,
                     "pack_name": packs[0].relative_to(store).as_posix()}
    if os.environ.get("TWOFOLD_GOLDEN_UPDATE"):
        (GOLDEN / "manifest-v1.json").write_bytes(manifest_bytes)
        (GOLDEN / "pack-v1.json").write_text(json.dumps(expected_pack, indent=1) + "\n")
    assert manifest_bytes == (GOLDEN / "manifest-v1.json").read_bytes()
    pinned = json.loads((GOLDEN / "pack-v1.json").read_text())
    if pinned["zstd"] == zstd_version:  # zstd output may change between zstd releases
        assert expected_pack == pinned
    assert json.loads((store / "store.json").read_bytes()) == {
        "format": "twofold-image-store", "version": 1, "chunk_size": MiB,
        "hash": "blake3", "compression": "zstd"}
    assert third_party_restore(store, json.loads(manifest_bytes)) == disk
