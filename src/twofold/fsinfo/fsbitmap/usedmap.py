"""The UsedMap result and the range arithmetic shared by every file system reader."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Extent = tuple[int, int]
"""A byte range as (offset, length), relative to the start of the file system."""

_CHUNK_BYTES = 1 << 22  # packed bitmap bytes expanded at once (32 Mi bits)


@dataclass(frozen=True)
class UsedMap:
    """Which bytes of a file system a restore needs: its metadata and its allocated blocks.

    `block_size` is the allocation unit (ext cluster, FAT/NTFS/exFAT cluster) and
    `total_size` the bytes the file system spans from its first byte. `extents` are
    sorted, merged and inside [0, total_size).
    """

    fstype: str
    block_size: int
    total_size: int
    extents: tuple[Extent, ...]
    dirty: bool = False
    dirty_reason: str = ""
    label: str | None = None
    uuid: str | None = None

    @property
    def used_bytes(self) -> int:
        """Total bytes covered by the extents."""
        return sum(length for _, length in self.extents)


def merge_extents(extents: Iterable[Extent], limit: int | None = None) -> tuple[Extent, ...]:
    """Sort byte ranges, clip them to [0, limit), and join overlapping or touching ones."""
    out: list[Extent] = []
    for first, length in sorted(extents):
        end = first + length
        start = max(first, 0)
        if limit is not None:
            end = min(end, limit)
        if end <= start:
            continue
        if out and start <= out[-1][0] + out[-1][1]:
            prev_start, prev_len = out[-1]
            out[-1] = (prev_start, max(prev_len, end - prev_start))
        else:
            out.append((start, end - start))
    return tuple(out)


def mask_extents(mask: npt.NDArray[np.bool_], unit: int, base: int = 0) -> list[Extent]:
    """Byte ranges of the runs of True in `mask`, where element i covers base + i*unit."""
    if mask.size == 0:
        return []
    padded = np.concatenate(([False], mask, [False])).view(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts = edges[0::2]
    ends = edges[1::2]
    return [
        (base + int(s) * unit, (int(e) - int(s)) * unit)
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def bitmap_extents(
    packed: bytes | npt.NDArray[np.uint8], nbits: int, unit: int, base: int = 0
) -> list[Extent]:
    """Byte ranges of the set bits of a little-endian packed bitmap (bit i = unit i).

    Only the first `nbits` bits count; the bitmap is expanded in slices so a large
    file system never needs one byte of memory per block.
    """
    arr = np.frombuffer(packed, dtype=np.uint8) if isinstance(packed, bytes) else packed
    if arr.size * 8 < nbits:
        raise ValueError(f"bitmap holds {arr.size * 8} bits, {nbits} wanted")
    out: list[Extent] = []
    for first_byte in range(0, (nbits + 7) // 8, _CHUNK_BYTES):
        chunk = arr[first_byte : first_byte + _CHUNK_BYTES]
        if not chunk.any():
            continue
        first_bit = first_byte * 8
        bits = np.unpackbits(chunk, bitorder="little")[: nbits - first_bit].astype(np.bool_)
        out.extend(mask_extents(bits, unit, base + first_bit * unit))
    return list(merge_extents(out))
