"""qcow2 (version 3) written directly, for the common case of a KVM/QEMU disk: the used
ranges are read in order (several windows ahead, in parallel), every 64 KiB cluster that
is not all zeros is appended, and the L2 tables, the refcounts and the header follow.
One pass, no helper process, no socket; `qemu-img check` accepts what it writes."""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS
L2_ENTRIES = CLUSTER // 8
REFCOUNT_ORDER = 4  # 16-bit refcounts
REFS_PER_BLOCK = CLUSTER * 8 // (1 << REFCOUNT_ORDER)
COPIED = 1 << 63  # QCOW_OFLAG_COPIED: the cluster's refcount is exactly one
WINDOW = 2 << 20
_ZERO = bytes(CLUSTER)

Reader = Callable[[int, int], list[memoryview]]


def cluster_runs(allocated: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The (start, end) runs of whole clusters (the last one may end at `size`) that the
    sorted byte ranges `allocated` touch, joined where they meet."""
    out: list[tuple[int, int]] = []
    for start, end in allocated:
        lo, hi = start // CLUSTER * CLUSTER, min(size, -(-end // CLUSTER) * CLUSTER)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _windows(runs: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    for start, end in runs:
        for pos in range(start, end, WINDOW):
            yield pos, min(WINDOW, end - pos)


def write_qcow2(fd: int, size: int, runs: list[tuple[int, int]], read: Reader,
                workers: int, advance: Callable[[int], None]) -> None:
    """Write a qcow2 image of a `size`-byte disk to the empty file `fd`: the bytes of
    `runs` (cluster_runs) from read(offset, length), zeros elsewhere."""
    l1_size = max(1, -(-size // (CLUSTER * L2_ENTRIES)))
    l1_clusters = -(-l1_size * 8 // CLUSTER)
    host = (1 + l1_clusters) * CLUSTER  # where the next cluster goes
    l2: dict[int, list[int]] = {}  # L1 index -> its table's entries

    def load(pos: int, length: int) -> bytes:
        return b"".join(read(pos, length))

    pending: deque[tuple[int, Future[bytes]]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="twofold-qcow2") as pool:
        for pos, length in _windows(runs):
            pending.append((pos, pool.submit(load, pos, length)))
            if len(pending) >= workers * 2:
                host = _append(fd, host, l2, pending.popleft(), advance)
        while pending:
            host = _append(fd, host, l2, pending.popleft(), advance)
    l1 = [0] * l1_size
    for index in sorted(l2):
        entries = l2[index]
        os.pwrite(fd, struct.pack(f">{L2_ENTRIES}Q", *entries), host)
        l1[index] = host | COPIED
        host += CLUSTER
    os.pwrite(fd, struct.pack(f">{l1_size}Q", *l1), CLUSTER)
    refcount_table, table_clusters = _refcounts(fd, host // CLUSTER)
    header = struct.pack(">IIQIIQIIQQIIQQQQII", 0x514649FB, 3, 0, 0, CLUSTER_BITS, size, 0,
                         l1_size, CLUSTER, refcount_table, table_clusters, 0, 0, 0, 0, 0,
                         REFCOUNT_ORDER, 104)
    os.pwrite(fd, header + bytes(8), 0)  # then the end of the header extensions


def _append(fd: int, host: int, l2: dict[int, list[int]],
            window: tuple[int, Future[bytes]], advance: Callable[[int], None]) -> int:
    """Append the clusters of a window's data (from disk offset `pos`, cluster aligned)
    that are not all zeros; map them in `l2`; the new end of the file."""
    pos, fut = window
    data = fut.result()
    view = memoryview(data)
    first = None  # start in `data` of the run of clusters not yet written
    for at in range(0, len(data), CLUSTER):
        if data.startswith(_ZERO[:len(data) - at], at):  # memcmp, nothing copied
            if first is not None:
                host = _flush(fd, host, view[first:at])
                first = None
            continue
        if first is None:
            first = at
        cluster = (pos + at) // CLUSTER
        entries = l2.setdefault(cluster // L2_ENTRIES, [0] * L2_ENTRIES)
        entries[cluster % L2_ENTRIES] = (host + at - first) | COPIED
    if first is not None:
        host = _flush(fd, host, view[first:])
    advance(len(data))
    return host


def _flush(fd: int, host: int, data: memoryview) -> int:
    padded = -(-len(data) // CLUSTER) * CLUSTER
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], host + done)
    if padded > len(data):  # the disk's last, partial cluster
        os.pwrite(fd, bytes(padded - len(data)), host + len(data))
    return host + padded


def _refcounts(fd: int, used: int) -> tuple[int, int]:
    """Append the refcount blocks and table for clusters 0..used-1 (and themselves), each
    counted once; (the table's offset, its clusters)."""
    blocks, table = 1, 1
    while True:
        total = used + blocks + table
        need_blocks = -(-total // REFS_PER_BLOCK)
        need_table = -(-need_blocks * 8 // CLUSTER)
        if (need_blocks, need_table) == (blocks, table):
            break
        blocks, table = max(blocks, need_blocks), max(table, need_table)
    total = used + blocks + table
    first_block = used
    for b in range(blocks):
        counted = min(REFS_PER_BLOCK, total - b * REFS_PER_BLOCK)
        block = struct.pack(f">{counted}H", *([1] * counted)) + \
            bytes((REFS_PER_BLOCK - counted) * 2)
        os.pwrite(fd, block, (first_block + b) * CLUSTER)
    entries = [(first_block + b) * CLUSTER for b in range(blocks)]
    table_at = (first_block + blocks) * CLUSTER
    os.pwrite(fd, struct.pack(f">{len(entries)}Q", *entries).ljust(table * CLUSTER, b"\0"),
              table_at)
    return table_at, table
