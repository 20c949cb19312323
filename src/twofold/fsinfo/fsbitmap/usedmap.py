"""The UsedMap result and the range arithmetic shared by every file system reader."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where a FAT is read, not by every image run
    import numpy as np
    import numpy.typing as npt

Extent = tuple[int, int]
"""A byte range as (offset, length), relative to the start of the file system."""

_TOKENS = re.compile(rb"\xff+|[^\x00\xff]")  # whole bytes in use, or one mixed byte


def _byte_runs(value: int) -> tuple[tuple[int, int], ...]:
    """The runs of set bits in one byte as (first bit, bit count), lowest bit first."""
    runs, bit = [], 0
    while bit < 8:
        if value >> bit & 1:
            start = bit
            while bit < 8 and value >> bit & 1:
                bit += 1
            runs.append((start, bit - start))
        bit += 1
    return tuple(runs)


_RUNS = tuple(_byte_runs(v) for v in range(256))


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
    import numpy as np

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


def bitmap_extents(packed: bytes | bytearray | memoryview, nbits: int, unit: int,
                   base: int = 0) -> list[Extent]:
    """Byte ranges of the set bits of a little-endian packed bitmap (bit i = unit i).

    Only the first `nbits` bits count. The scan skips free bytes and takes whole bytes in
    use in one step (both in C, through a regular expression), so Python only looks at
    the bytes that mix used and free blocks.
    """
    nbytes = (nbits + 7) // 8
    if len(packed) < nbytes:
        raise ValueError(f"bitmap holds {len(packed) * 8} bits, {nbits} wanted")
    data = bytearray(packed[:nbytes])  # the one copy: the last byte may be masked
    if nbits % 8:  # bits past the end do not count
        data[-1] &= (1 << nbits % 8) - 1
    out: list[Extent] = []
    run_start = run_end = -1  # the open run, in bits
    for m in _TOKENS.finditer(data):
        first, last = m.span()
        if last - first > 1 or data[first] == 0xFF:
            pieces: tuple[tuple[int, int], ...] = ((0, (last - first) * 8),)
        else:
            pieces = _RUNS[data[first]]
        for bit, count in pieces:
            start = first * 8 + bit
            if start == run_end:
                run_end += count
                continue
            if run_end > run_start:
                out.append((base + run_start * unit, (run_end - run_start) * unit))
            run_start, run_end = start, start + count
    if run_end > run_start:
        out.append((base + run_start * unit, (run_end - run_start) * unit))
    return out
