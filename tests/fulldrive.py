"""Small real drives for the space tests: an ext4 (or FUSE FAT32/exFAT) loop drive, and
filling one until the file system says ENOSPC (root only)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.drives import foreign_drive, mounted, run


@contextmanager
def small_drive(where: Path, size_mb: int, kind: str = "ext4") -> Iterator[Path]:
    """A freshly made drive of `size_mb` MB mounted at where/mnt: ext4 (no blocks
    reserved for root, so that full means full for everyone), or a FUSE kind."""
    if kind != "ext4":
        where.mkdir(parents=True, exist_ok=True)
        with foreign_drive(kind, where, f"{size_mb}M") as mnt:
            yield mnt
        return
    where.mkdir(parents=True, exist_ok=True)
    image = where / "drive.img"
    run("truncate", "-s", f"{size_mb}M", image)
    run("mkfs.ext4", "-q", "-m", "0", image)
    try:
        with mounted(["mount", "-o", "loop", str(image)], where / "mnt") as mnt:
            yield mnt
    finally:
        image.unlink(missing_ok=True)


def fill(folder: Path, name: str = "filler") -> int:
    """Write files folder/name-N until the drive says ENOSPC, in ever smaller writes so
    that the last clusters are taken too; returns the bytes written."""
    written = 0
    full = (errno.ENOSPC, errno.EPERM)  # fusefat says EPERM when no cluster is left
    for i, size in enumerate((1 << 20, 64 << 10, 4 << 10, 512)):  # big, then the last bits
        try:
            fd = os.open(folder / f"{name}-{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as err:
            if err.errno not in full:
                raise
            break
        block = os.urandom(size)
        try:
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as err:
                    if err.errno not in full:
                        raise
                    break
        finally:
            os.close(fd)
    os.sync()
    return written


def free(folder: Path) -> int:
    """Bytes free on the drive holding `folder`."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize
