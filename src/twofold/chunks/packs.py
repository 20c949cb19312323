"""The pack file format: compressed chunks back to back, then an index of them and a
footer (docs/FORMAT.md, "Packs"). Building and parsing only; no I/O."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import blake3
import zstandard

from twofold.blobs.objects import StoreError

PACK_MAGIC = b"TFPACK01"
"""The first 8 bytes of every pack (format version 1)."""
FOOTER_MAGIC = b"TFPKEND1"
ENTRY = struct.Struct("<32sQII")  # chunk id, offset in the pack, stored length, plain length
FOOTER = struct.Struct("<QII8s")  # index offset, entry count, CRC32 of the index, magic
ID_BYTES = 32


class PackDamaged(StoreError):
    """A pack's header, index or footer is not what the format says."""


@dataclass(frozen=True)
class PackEntry:
    """Where one compressed chunk lies inside its pack."""

    chunk_id: bytes
    offset: int
    length: int  # stored (compressed) bytes
    plain_length: int


def chunk_id(data: bytes | memoryview) -> bytes:
    """The id of a chunk: BLAKE3 (32 bytes) of its plain data."""
    return bytes(blake3.blake3(data).digest())


def pack_name(data: bytes, folder: str = "") -> str:
    """The object name of a pack: its own BLAKE3, under packs/<2 hex>/ in `folder`."""
    digest = blake3.blake3(data).hexdigest()
    base = f"packs/{digest[:2]}/{digest}.pack"
    return f"{folder}/{base}" if folder else base


class PackBuilder:
    """Collects compressed chunks in memory and turns them into one pack's bytes
    (`seal_index`: how an encrypted store seals the index, `index_overhead` bytes longer)."""

    def __init__(self, seal_index: Callable[[bytes], bytes] | None = None,
                 index_overhead: int = 0) -> None:
        self.seal_index = seal_index
        self.index_overhead = index_overhead
        self.parts: list[bytes] = [PACK_MAGIC]
        self.entries: list[PackEntry] = []
        self.size = len(PACK_MAGIC)
        self.ids: set[bytes] = set()

    def add(self, cid: bytes, stored: bytes, plain_length: int) -> PackEntry:
        """Append one compressed chunk; returns where it lies."""
        entry = PackEntry(cid, self.size, len(stored), plain_length)
        self.parts.append(stored)
        self.entries.append(entry)
        self.ids.add(cid)
        self.size += len(stored)
        return entry

    def finished_size(self, extra_entries: int = 0) -> int:
        """The pack's size once index and footer are added."""
        return (self.size + (len(self.entries) + extra_entries) * ENTRY.size
                + self.index_overhead + FOOTER.size)

    def build(self) -> bytes:
        """The complete pack."""
        index = b"".join(ENTRY.pack(e.chunk_id, e.offset, e.length, e.plain_length)
                         for e in self.entries)
        if self.seal_index is not None:
            index = self.seal_index(index)
        footer = FOOTER.pack(self.size, len(self.entries), zlib.crc32(index), FOOTER_MAGIC)
        return b"".join([*self.parts, index, footer])


def parse_footer(tail: bytes, pack_size: int, name: str,
                 index_overhead: int = 0) -> tuple[int, int, int]:
    """(index offset, entry count, index CRC) from a pack's last FOOTER.size bytes (an
    encrypted store's sealed index is `index_overhead` bytes longer)."""
    if len(tail) < FOOTER.size:
        raise PackDamaged(f"pack {name} is too short for a footer")
    index_offset, count, crc, magic = FOOTER.unpack(tail[-FOOTER.size:])
    if magic != FOOTER_MAGIC or \
            index_offset + count * ENTRY.size + index_overhead + FOOTER.size != pack_size:
        raise PackDamaged(f"pack {name} has a damaged footer")
    return index_offset, count, crc


def parse_index(index: bytes, count: int, crc: int, name: str) -> list[PackEntry]:
    """The entries of a pack's index, checked against the CRC in its footer."""
    if len(index) != count * ENTRY.size or zlib.crc32(index) != crc:
        raise PackDamaged(f"pack {name} has a damaged index")
    out = []
    for i in range(count):
        cid, offset, length, plain = ENTRY.unpack_from(index, i * ENTRY.size)
        out.append(PackEntry(cid, offset, length, plain))
    return out


_local = threading.local()


def compress(data: bytes | memoryview, level: int) -> bytes:
    """One zstd frame (content size recorded) of `data`; safe to call from any thread."""
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "cctx", None)
    if cache is None:
        cache = _local.cctx = {}
    cctx = cache.get(level)
    if cctx is None:
        cctx = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return bytes(cctx.compress(data))


def decompress(stored: bytes, plain_length: int) -> bytes:
    """The plain data of one stored chunk; PackDamaged when it is not a valid frame."""
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    try:
        return bytes(dctx.decompress(stored, max_output_size=plain_length))
    except zstandard.ZstdError as err:
        raise PackDamaged(f"a stored chunk does not decompress ({err})") from None
