"""What bounds a full image and a restore of one ext4 on this machine: the cold read speed
of its used blocks, zstd -3 and BLAKE3 speeds on one core and on all, the write speed; the
floors they give and each tool's time against them (image_vs_partclone.py --limits).

The used blocks are those twofold reads (its own ext4 bitmap reader, run with the code
under test). Read: page cache dropped, then every used extent read from the partition's
device with O_DIRECT in pieces of up to 8 MiB, in order. The used bytes are then copied
into /dev/shm, and from there: the zstd CLI at -3 on 2 threads (-T2) and on one
(--single-thread), python-zstandard level 3 and BLAKE3 (python blake3) per 1 MiB chunk
on one core (as twofold compresses and names its chunks), BLAKE3 over 64 MiB pieces on
all cores, zstd decompression of those chunks on one core, and `dd ... conv=fsync` of the
used bytes into the workdir (write speed, for restores).
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import blake3
import zstandard
from common import drop_caches

MB = 1e6
CHUNK = 1 << 20
PIECE = 8 << 20

EXTENTS = """
import json, sys
from twofold.fsinfo.blockio import FileReader
from twofold.fsinfo.fsbitmap import used_ranges
with FileReader(sys.argv[1]) as r:
    print(json.dumps(used_ranges(r, "ext4").extents))
"""


@dataclass
class Limits:
    """Seconds each step takes over the used bytes (alone, nothing else running)."""

    used: int
    read: float  # cold, O_DIRECT, used extents in order
    zstd_t2: float  # zstd -3 -T2 (CLI)
    zstd_1: float  # zstd -3 --single-thread (CLI)
    chunk_zstd: float  # python-zstandard level 3, 1 MiB chunks, one core
    chunk_unzstd: float  # their decompression, one core
    chunk_blake3: float  # BLAKE3 of 1 MiB chunks, one core
    blake3_mt: float  # BLAKE3 of 64 MiB pieces, all cores
    write: float  # dd conv=fsync into the workdir
    cores: int

    def speed(self, seconds: float) -> float:
        """MB/s of used bytes."""
        return self.used / seconds / MB

    @property
    def image_floor(self) -> float:
        """The issue's floor: used bytes / min(read, zstd -3 on both cores)."""
        return max(self.read, self.zstd_t2)

    @property
    def image_cpu_floor(self) -> float:
        """Compress and hash every chunk once, spread perfectly over the cores; or the
        read, whichever is longer."""
        return max(self.read, (self.chunk_zstd + self.chunk_blake3) / self.cores)

    @property
    def restore_floor(self) -> float:
        """Decompress every chunk over the cores, or write the used bytes, whichever is
        longer (a restore that reads back and hashes what it wrote does more)."""
        return max(self.write, self.chunk_unzstd / self.cores)


def used_extents(part: str, env: dict[str, str] | None) -> list[tuple[int, int]]:
    """(offset, length) of the used blocks, from twofold's ext4 reader."""
    out = subprocess.run([sys.executable, "-c", EXTENTS, part], env=env, check=True,
                         capture_output=True, text=True).stdout
    return [(int(a), int(b)) for a, b in json.loads(out)]


def _pieces(extents: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(off + at, min(PIECE, length - at)) for off, length in extents
            for at in range(0, length, PIECE)]


def read_cold(part: str, extents: list[tuple[int, int]]) -> float:
    """Seconds to read the extents with O_DIRECT after dropping the page cache."""
    buf = mmap.mmap(-1, PIECE)
    view = memoryview(buf)
    fd = os.open(part, os.O_RDONLY | os.O_DIRECT)
    try:
        drop_caches()
        t0 = time.perf_counter()
        for off, n in _pieces(extents):
            if os.preadv(fd, [view[:n]], off) != n:
                raise SystemExit(f"short read at {off} of {part}")
        return time.perf_counter() - t0
    finally:
        os.close(fd)
        view.release()
        buf.close()


def copy_used(part: str, extents: list[tuple[int, int]], dest: Path) -> None:
    """The used bytes, one after another, into `dest`."""
    fd = os.open(part, os.O_RDONLY)
    try:
        with dest.open("wb") as out:
            for off, n in _pieces(extents):
                out.write(os.pread(fd, n, off))
    finally:
        os.close(fd)


def _cmd_seconds(cmd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True)
    return time.perf_counter() - t0


def _chunks(data: memoryview) -> list[memoryview]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


def measure(part: str, work: Path, env: dict[str, str] | None) -> Limits:
    """Measure every limit on the used blocks of the ext4 in `part`."""
    extents = used_extents(part, env)
    used = sum(n for _, n in extents)
    read = read_cold(part, extents)
    shm = Path("/dev/shm") / f"tf-limits-{os.getpid()}.bin"
    try:
        copy_used(part, extents, shm)
        zstd_t2 = _cmd_seconds(f"zstd -3 -T2 -q -c {shm} > /dev/null")
        zstd_1 = _cmd_seconds(f"zstd -3 --single-thread -q -c {shm} > /dev/null")
        with shm.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            data = memoryview(m)
            chunks = _chunks(data)
            cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
            t0 = time.perf_counter()
            packed = [cctx.compress(c) for c in chunks]
            chunk_zstd = time.perf_counter() - t0
            t0 = time.perf_counter()
            for p in packed:
                dctx.decompress(p)
            chunk_unzstd = time.perf_counter() - t0
            del packed
            t0 = time.perf_counter()
            for c in chunks:
                blake3.blake3(c).digest()
            chunk_blake3 = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in range(0, len(data), 64 << 20):
                blake3.blake3(data[i:i + (64 << 20)], max_threads=blake3.blake3.AUTO).digest()
            blake3_mt = time.perf_counter() - t0
            for c in chunks:
                c.release()
            data.release()
        out = work / "limits-write.bin"
        drop_caches()
        write = _cmd_seconds(f"dd if={shm} of={out} bs=8M conv=fsync status=none")
        out.unlink()
    finally:
        shm.unlink(missing_ok=True)
    return Limits(used, read, zstd_t2, zstd_1, chunk_zstd, chunk_unzstd, chunk_blake3,
                  blake3_mt, write, os.cpu_count() or 1)


def report(lim: Limits, images: dict[str, float], restores: dict[str, float]) -> None:
    """Print the limits, the floors, and each timed tool against its floor."""
    print(f"limits over the {lim.used / MB:.0f} MB used ({lim.cores} cores), MB/s of "
          "used bytes:")
    rows = [("cold read, O_DIRECT, used extents", lim.read),
            ("zstd -3 -T2 (CLI)", lim.zstd_t2), ("zstd -3 --single-thread (CLI)", lim.zstd_1),
            ("zstd level 3, 1 MiB chunks, 1 core", lim.chunk_zstd),
            ("zstd decompress, 1 MiB chunks, 1 core", lim.chunk_unzstd),
            ("BLAKE3, 1 MiB chunks, 1 core", lim.chunk_blake3),
            ("BLAKE3, 64 MiB pieces, all cores", lim.blake3_mt),
            ("write + fsync (dd)", lim.write)]
    for text, secs in rows:
        print(f"  {text:40} {secs:7.2f} s {lim.speed(secs):8.0f} MB/s")
    bound = "the cold read" if lim.read >= lim.zstd_t2 else "zstd on both cores"
    print(f"  image floor, used / min(read, zstd -T2): {lim.image_floor:.2f} s ({bound})")
    print(f"  image floor with hashing, max(read, (zstd + BLAKE3 per chunk) / cores): "
          f"{lim.image_cpu_floor:.2f} s")
    print(f"  restore floor, max(write, decompress / cores): {lim.restore_floor:.2f} s")
    for name, secs in images.items():
        print(f"  {name:28} {secs:7.2f} s = {secs / lim.image_floor:5.2f}x the image floor, "
              f"{secs / lim.image_cpu_floor:5.2f}x the floor with hashing")
    for name, secs in restores.items():
        print(f"  {name:28} {secs:7.2f} s = {secs / lim.restore_floor:5.2f}x the restore floor")
