"""Where block devices are mounted: /proc/self/mountinfo, plus FUSE drivers (fusefat,
exfat-fuse) whose mount names no device: their process's command line does."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from itertools import pairwise

MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class Mount:
    """One mount of a block device."""

    device: int  # the block device's number (st_rdev)
    point: str  # where it is mounted
    fstype: str  # as the kernel names it ("ext4", "fuse.fusefat", "fuseblk")
    read_write: bool
    fs_dev: int  # st_dev of files under the mount point (differs from device for FUSE)
    root: str = "/"  # the folder of the file system mounted there ("/" unless a bind mount)


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


def _devnum(text: str) -> int:
    major, minor = text.split(":")
    return os.makedev(int(major), int(minor))


def _block_rdev(path: str) -> int | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_rdev if stat.S_ISBLK(st.st_mode) else None


def _fuse_sources() -> list[tuple[str, int]]:
    """(mount point as given, block device) of FUSE drivers started as `driver [opts]
    DEV POINT`. A daemon moves to / once started, so a relative POINT is kept relative
    (matched against the end of mount points)."""
    found: list[tuple[str, int]] = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = [os.fsdecode(a) for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        name = os.path.basename(args[0]) if args else ""
        if "fuse" not in name and "fat" not in name:
            continue
        for dev_arg, point in pairwise(args):
            rdev = _block_rdev(dev_arg)
            if rdev is not None:
                found.append((point, rdev))
    return found


def _fuse_device(sources: list[tuple[str, int]], point: str) -> int | None:
    real = os.path.realpath(point)
    for given, rdev in sources:
        if os.path.isabs(given) and os.path.realpath(given) == real:
            return rdev
    for given, rdev in sources:
        if not os.path.isabs(given) and real.endswith("/" + os.path.normpath(given)):
            return rdev
    return None


def mounts() -> list[Mount]:
    """Every mount of a block device on this machine (FUSE ones through their driver)."""
    try:
        with open(MOUNTINFO) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    fuse: list[tuple[str, int]] | None = None
    out: list[Mount] = []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 3:
            continue
        point, fstype = _unescape(fields[4]), tail[0]
        fs_dev = _devnum(fields[2])
        rw = "rw" in fields[5].split(",") and "rw" in tail[2].split(",")
        device = _block_rdev(_unescape(tail[1])) if tail[1].startswith("/") else None
        if device is None and fstype.startswith("fuse"):
            if fuse is None:
                fuse = _fuse_sources()
            device = _fuse_device(fuse, point)
        if device is None and os.major(fs_dev) != 0:
            device = fs_dev
        if device is not None:
            out.append(Mount(device, point, fstype, rw, fs_dev, _unescape(fields[3])))
    return out


def writable_mount(device: int) -> Mount | None:
    """The read-write mount of `device`'s whole file system (the shortest mount point
    when several; bind mounts of a folder inside it are not whole)."""
    hits = [m for m in mounts() if m.device == device and m.read_write and m.root == "/"]
    return min(hits, key=lambda m: len(m.point)) if hits else None
