"""Erase the partition-table and file-system signatures a disk holds before an image is
written over it (docs/DESIGN.md, "Wiping before a restore"): `wipefs --all` (util-linux)
on each partition device the kernel shows and on the disk, then zeros over the first and
last MiB of every partition the old table names and of the disk itself (MBR, both GPT
headers and entries, and the file-system, RAID and LVM labels kept at either end)."""

from __future__ import annotations

import os
import shutil
import subprocess

from twofold.core.errors import TwofoldError
from twofold.core.text import plural
from twofold.fsinfo.blockio import FileReader, LayoutError
from twofold.fsinfo.parttable import parse_table

EDGE = 1 << 20
"""Bytes zeroed at each end of the disk and of each old partition."""
_SBIN = ("/usr/sbin", "/sbin")


class WipeError(TwofoldError):
    """The old signatures could not be erased; nothing of the image was written."""


def _wipefs() -> str | None:
    return shutil.which("wipefs") or shutil.which("wipefs", path=os.pathsep.join(_SBIN))


def parse_wipefs(text: str) -> list[str]:
    """The signatures `wipefs --all` reports erasing ("dos", "gpt", "PMBR", "ext4"...):
    lines like "/dev/sdb: 8 bytes were erased at offset 0x00000200 (gpt): 45 46 49 ..."."""
    found = []
    for line in text.splitlines():
        if "were erased at offset" in line and "(" in line:
            found.append(line.split("(", 1)[1].split(")", 1)[0])
    return found


def old_ranges(path: str, size: int) -> list[tuple[int, int]]:
    """(start, length) of every partition the current table of `path` names (none when
    it holds no table that can be read)."""
    try:
        with FileReader(path) as reader:
            table = parse_table(reader, size)
    except (LayoutError, ValueError, OSError):
        return []
    return [(p.start, min(p.size, size - p.start)) for p in table.partitions
            if p.start < size]


def zero_edges(fd: int, start: int, length: int) -> None:
    """Write zeros over the first and last EDGE bytes of [start, start + length)."""
    zeros = bytes(min(EDGE, length))
    os.pwrite(fd, zeros, start)
    os.pwrite(fd, zeros, start + max(0, length - len(zeros)))


def wipe_signatures(disk: str, partitions: list[str], fd: int, size: int) -> list[str]:
    """Erase every signature on `partitions` (the kernel's devices for the disk's old
    partitions), then on `disk`, with wipefs; then zero the edges of the old table's
    partitions and of the disk through `fd` (open for writing, `size` bytes). Returns
    what wipefs erased per device ("sdb: gpt, gpt, PMBR") and the ranges zeroed;
    WipeError when wipefs fails."""
    ranges = old_ranges(disk, size)  # read before wipefs erases the table
    tool = _wipefs()
    erased: list[str] = []
    if tool is not None:
        for dev in [*partitions, disk]:
            if not os.path.exists(dev):
                continue
            got = subprocess.run([tool, "--all", "--force", dev], capture_output=True,
                                 text=True, check=False, timeout=120)
            if got.returncode != 0:
                raise WipeError(f"could not erase the old signatures on {dev}: "
                                f"{got.stderr.strip() or got.returncode}",
                                "nothing of the image was written; is the disk in use?")
            kinds = parse_wipefs(got.stdout)
            if kinds:
                erased.append(f"{os.path.basename(dev)}: {', '.join(kinds)}")
    for start, length in [*ranges, (0, size)]:
        zero_edges(fd, start, length)
    os.fsync(fd)
    if ranges:
        erased.append(f"both ends of {plural(len(ranges), 'old partition')} zeroed")
    return erased
