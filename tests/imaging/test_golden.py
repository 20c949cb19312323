"""Golden test: a tiny deterministic MBR disk is imaged and the manifest (version 2, sealed)
and store.json must match the checked-in ones byte for byte; the checksums are checked and
the pack read back by a restorer written from docs/FORMAT.md alone (struct, zstd, blake3;
no twofold code), which must give the disk back, from the version 1 manifest too. The old
formats (manifest, index file and store.json of version 1) are still read by twofold.
Set TWOFOLD_GOLDEN_UPDATE=1 to rewrite the expected files after a deliberate change."""

from __future__ import annotations

import json
import os
import socket
import struct
import zlib
from pathlib import Path

import blake3
import zstandard

from twofold.blobs.objects import LocalObjects
from twofold.chunks.chunkstore import ChunkStore
from twofold.chunks.indexfiles import marker_doc
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.manifest import parse_manifest
from twofold.image.restore import restore

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


def third_party_seal_ok(data: bytes) -> bool:
    """The checksum check of docs/FORMAT.md ("Checksums"), written from the text alone."""
    if not data.startswith(b'{"checksum":"') or data[77:79] != b'",':
        return False
    zeroed = data[:13] + b"0" * 64 + data[77:]
    return blake3.blake3(zeroed).hexdigest().encode() == data[13:77]


def third_party_reseal(data: bytes) -> bytes:
    """A sealed document's checksum made again after its bytes were edited."""
    zeroed = data[:13] + b"0" * 64 + data[77:]
    return data[:13] + blake3.blake3(zeroed).hexdigest().encode() + data[77:]


def test_golden_manifest_and_pack(tmp_path: Path) -> None:
    source = tmp_path / "tiny.img"
    disk = tiny_disk(source)
    target = tmp_path / "drive"
    target.mkdir()
    clock = FixedClock()
    clock.now_ns = lambda: 1_767_225_600_000_000_000  # type: ignore[method-assign]
    create(str(source), str(target), "golden", 3, None, False, NullProgress(), clock)
    store = target / "twofold-images"
    made = (store / "images/golden.json").read_bytes()
    assert third_party_seal_ok(made)
    host = b',"host":' + json.dumps(socket.gethostname()).encode()
    assert made.count(host) == 1  # new manifests name their computer; the golden one does not
    manifest_bytes = third_party_reseal(
        made.replace(json.dumps(str(source)).encode(), b'"SOURCE"').replace(host, b""))
    packs = store_files(target, ".pack")
    assert len(packs) == 1
    pack_hash = blake3.blake3(packs[0].read_bytes()).hexdigest()
    zstd_version = ".".join(map(str, zstandard.ZSTD_VERSION))
    expected_pack = {"zstd": zstd_version, "pack_blake3": pack_hash,
                     "pack_name": packs[0].relative_to(store).as_posix()}
    marker = (store / "store.json").read_bytes()
    if os.environ.get("TWOFOLD_GOLDEN_UPDATE"):
        (GOLDEN / "manifest-v2.json").write_bytes(manifest_bytes)
        (GOLDEN / "store-v2.json").write_bytes(marker_doc(MiB))
        (GOLDEN / "pack-v1.json").write_text(json.dumps(expected_pack, indent=1) + "\n")
    assert manifest_bytes == (GOLDEN / "manifest-v2.json").read_bytes()
    pinned = json.loads((GOLDEN / "pack-v1.json").read_text())
    if pinned["zstd"] == zstd_version:  # zstd output may change between zstd releases
        assert expected_pack == pinned
    golden_marker = (GOLDEN / "store-v2.json").read_bytes()  # a store made off any drive
    assert marker_doc(MiB) == golden_marker and third_party_seal_ok(golden_marker)
    assert third_party_seal_ok(marker)
    doc = json.loads(marker)
    assert isinstance(doc.pop("drive", {}), dict)  # the drive's id, when made in a folder
    assert doc == {
        "checksum": marker[13:77].decode(), "format": "twofold-image-store", "version": 2,
        "chunk_size": MiB, "hash": "blake3", "compression": "zstd"}
    for index in store_files(target, ".json"):
        if index.parent.name == "index":
            assert third_party_seal_ok(index.read_bytes())
            assert blake3.blake3(index.read_bytes()).hexdigest() == index.stem
    assert third_party_restore(store, json.loads(manifest_bytes)) == disk
    old = json.loads((GOLDEN / "manifest-v1.json").read_bytes())
    assert third_party_restore(store, old) == disk


def test_old_formats_are_read(tmp_path: Path) -> None:
    """A store of version 1 (store.json, index file and manifest without checksums) is
    read, listed and restored by this twofold; the golden manifests of both versions
    parse to the same image."""
    source = tmp_path / "tiny.img"
    disk = tiny_disk(source)
    target = tmp_path / "drive"
    target.mkdir()
    create(str(source), str(target), "golden", 3, None, False, NullProgress(), FixedClock())
    store = target / "twofold-images"
    v1 = parse_manifest((GOLDEN / "manifest-v1.json").read_bytes(), "v1", "golden")
    v2 = parse_manifest((GOLDEN / "manifest-v2.json").read_bytes(), "v2", "golden")
    assert v1 == v2 and v1.source == "SOURCE" and v2.host == ""  # made before hosts
    (store / "images/golden.json").write_bytes(
        (GOLDEN / "manifest-v1.json").read_bytes())
    (store / "store.json").write_text(json.dumps(
        {"format": "twofold-image-store", "version": 1, "chunk_size": MiB,
         "hash": "blake3", "compression": "zstd"}, indent=1))
    for index in store_files(target, ".json"):
        if index.parent.name == "index":
            doc = json.loads(index.read_bytes())
            del doc["checksum"]
            doc["version"] = 1
            data = json.dumps(doc, separators=(",", ":")).encode()
            index.unlink()
            (index.parent / f"{blake3.blake3(data).hexdigest()}.json").write_bytes(data)
    chunks = ChunkStore(LocalObjects(store))
    chunks.check()
    assert chunks.load_index() == [] and not chunks.damaged_files  # the v1 index is used
    out = tmp_path / "out.img"
    restore(str(target), "golden", str(out), None, NullProgress(), FixedClock())
    assert out.read_bytes() == disk
