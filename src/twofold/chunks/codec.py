"""How a store names and holds one chunk: its id (plain BLAKE3, or keyed in an encrypted
store), its stored form (zstd, then sealed when encrypted) and back, and a pack's own
index (sealed when encrypted). No I/O: ChunkStore reads and writes."""

from __future__ import annotations

import zlib
from typing import cast

from twofold.chunks.packs import (
    PackBuilder,
    PackDamaged,
    PackEntry,
    chunk_id,
    compress,
    decompress,
    parse_index,
)
from twofold.vault.cipher import OVERHEAD, PACK_INDEX_AD, SealDamaged, Vault, chunk_ad


class Codec:
    """The chunk encoding of one store, under its `vault` (None: a plain store)."""

    def __init__(self, vault: Vault | None) -> None:
        self.vault = vault  # chunks sealed and ids keyed (vault/), or None
        self.overhead = 0 if vault is None else OVERHEAD
        """Bytes a sealed object has beyond its plain bytes (0 in a plain store)."""
        self._zero_ids: dict[int, bytes] = {}

    def new_builder(self) -> PackBuilder:
        """A pack builder for this store (its index sealed when encrypted)."""
        vault = self.vault
        if vault is None:
            return PackBuilder()
        return PackBuilder(lambda index: vault.seal(index, PACK_INDEX_AD), OVERHEAD)

    def open_pack_index(self, raw: bytes, count: int, crc: int, pack: str) -> list[PackEntry]:
        """The entries of a pack's own index read from its end (`count` entries, `crc`
        from its footer); PackDamaged when they fail their checks."""
        if self.vault is None:
            return parse_index(raw, count, crc, pack)
        if zlib.crc32(raw) != crc:
            raise PackDamaged(f"pack {pack} has a damaged index")
        try:
            plain = self.vault.open(raw, PACK_INDEX_AD, f"the index of pack {pack}")
        except SealDamaged as err:
            raise PackDamaged(err.message) from None
        return parse_index(plain, count, zlib.crc32(plain), pack)

    def id_of(self, data: bytes | memoryview) -> bytes:
        """The id of a chunk of plain `data` in this store (keyed when encrypted)."""
        return chunk_id(data) if self.vault is None else self.vault.chunk_id(data)

    def is_zero(self, cid: bytes, data: bytes | memoryview) -> bool:
        """Whether `data` (whose id is `cid`) is all zero bytes, at almost no cost when the
        id is needed anyway: a first or last byte that is not zero says no at once, else
        the id is compared with that of as many zero bytes (kept for the common lengths).
        Comparing the bytes with zeros in Python would go through memoryview's
        element-wise compare, 1 ms a MiB of zeros, holding the GIL."""
        length = len(data)
        if not length:
            return True
        if data[0] or data[-1]:
            return False
        zero = self._zero_ids.get(length)
        if zero is None:
            zero = self.id_of(bytes(length))
            if len(self._zero_ids) < 64:  # cells of images have few lengths
                self._zero_ids[length] = zero
        return cid == zero

    def stored_form(self, cid: bytes, data: bytes | memoryview, level: int) -> bytes:
        """What a pack holds for chunk `cid`: zstd at `level`, then sealed when the store
        is encrypted (any thread)."""
        stored = compress(data, level)
        if self.vault is None:
            return stored
        # a bytearray, which the pack builder only joins: no copy of it is made
        return cast(bytes, self.vault.seal_chunk(stored, cid))

    def unpack(self, cid: bytes, stored: bytes, plain_length: int) -> bytes:
        """The plain data of stored chunk bytes, unchecked against `cid` (opened first
        when encrypted); PackDamaged when they do not open or decompress."""
        if self.vault is not None:
            try:
                stored = self.vault.open(stored, chunk_ad(cid), f"chunk {cid.hex()}")
            except SealDamaged as err:
                raise PackDamaged(err.message) from None
        return decompress(stored, plain_length)

    def sound(self, cid: bytes, stored: bytes, plain_length: int) -> bool:
        """True when stored chunk bytes open to data of `plain_length` with id `cid`."""
        try:
            data = self.unpack(cid, stored, plain_length)
        except PackDamaged:
            return False
        return len(data) == plain_length and self.id_of(data) == cid

