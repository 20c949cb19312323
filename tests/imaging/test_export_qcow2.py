"""The qcow2 writer alone: a disk of several L2 tables with data at odd places and a last
partial cluster is accepted by `qemu-img check` and equals the same bytes written raw;
refcounts over more than one refcount block count every cluster once."""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from twofold.image.export_qcow2 import (
    CLUSTER,
    REFS_PER_BLOCK,
    _refcounts,
    cluster_runs,
    write_qcow2,
)

GiB = 1 << 30


@pytest.mark.skipif(shutil.which("qemu-img") is None,
                    reason="qemu-img is missing (Debian package qemu-utils)")
def test_qcow2_equals_raw(tmp_path: Path) -> None:
    size = 3 * GiB + 5 * 512  # six L2 tables, a last cluster of 2,560 bytes
    rng = random.Random(9)
    raw = tmp_path / "disk.raw"
    allocated = [(0, 4096), (CLUSTER * 3 + 100, CLUSTER * 3 + 5000),  # inside one cluster
                 (GiB - 7000, GiB + 3 * CLUSTER),  # across an L2 table's end
                 (2 * GiB, 2 * GiB + 40 * CLUSTER),  # zeros only: not stored
                 (size - 3000, size)]
    with open(raw, "wb") as f:
        f.truncate(size)
        for start, end in allocated:
            if start != 2 * GiB:
                f.seek(start)
                f.write(rng.randbytes(end - start))
    fd = os.open(raw, os.O_RDONLY)
    seen = []

    def read(offset: int, length: int) -> list[memoryview]:
        return [memoryview(os.pread(fd, length, offset))]

    out = tmp_path / "disk.qcow2"
    wfd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    runs = cluster_runs(allocated, size)
    try:
        write_qcow2(wfd, size, runs, read, 3, seen.append)
    finally:
        os.close(wfd)
        os.close(fd)
    assert sum(seen) == sum(e - s for s, e in runs)
    check = subprocess.run(["qemu-img", "check", out], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0 and "No errors were found" in check.stdout, check
    same = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", out, raw],
                          capture_output=True, text=True, check=False)
    assert same.returncode == 0, same
    stored = sum(e - s for s, e in runs) - 40 * CLUSTER  # the zero run takes no room
    assert out.stat().st_blocks * 512 < stored + 16 * CLUSTER


def test_refcounts_over_several_blocks(tmp_path: Path) -> None:
    used = REFS_PER_BLOCK * 2 + 10  # three blocks (and the table) to count
    path = tmp_path / "r"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        table_at, clusters = _refcounts(fd, used)
        assert (table_at, clusters) == ((used + 3) * CLUSTER, 1)
        entries = struct.unpack(">4Q", os.pread(fd, 32, table_at))
        assert entries == (used * CLUSTER, (used + 1) * CLUSTER, (used + 2) * CLUSTER, 0)
        counts = []
        for block in entries[:3]:
            counts += struct.unpack(f">{REFS_PER_BLOCK}H", os.pread(fd, CLUSTER, block))
        total = used + 3 + 1
        assert counts[:total] == [1] * total and not any(counts[total:])
    finally:
        os.close(fd)
