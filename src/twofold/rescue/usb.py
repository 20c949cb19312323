"""`rescue usb`: check that a disk may be overwritten (not the running system's, nothing
mounted, large enough), write the ISO to it and read it back from the device."""

from __future__ import annotations

import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from blake3 import blake3

from twofold.core.progress import Progress
from twofold.fsinfo.disk import whole_disk
from twofold.image.source import busy_reason
from twofold.rescue.errors import StickRefused, StickWriteError

BLOCK = 4 << 20
_BLKFLSBUF = 0x1261  # Linux ioctl: drop the device's buffers, so reads go to the stick
SYSTEM_PATHS = ("/", "/boot", "/boot/efi", "/usr", "/run/live/medium")


@dataclass
class Stick:
    """The disk about to be overwritten, as the user should recognise it."""

    path: str
    name: str  # kernel name: sdb, loop3
    model: str
    size: int


@dataclass
class WriteResult:
    """What `rescue usb` wrote and checked."""

    device: str
    bytes_written: int
    digest: str
    seconds: float = 0.0


def _sys(name: str, *parts: str) -> str:
    try:
        return Path("/sys/class/block", name, *parts).read_text().strip()
    except OSError:
        return ""


def describe(device: str) -> Stick:
    """Model and size of a whole disk; StickRefused for what is no whole disk."""
    try:
        st = os.stat(device)
    except OSError as e:
        raise StickRefused(f"{device}: {e.strerror}", "name a disk: /dev/sdX") from None
    if not stat.S_ISBLK(st.st_mode):
        raise StickRefused(f"{device} is not a block device", "name a disk: /dev/sdX")
    name = whole_disk(st.st_rdev)
    own = os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(st.st_rdev)}:"
                                            f"{os.minor(st.st_rdev)}"))
    if own != name:
        raise StickRefused(f"{device} is a partition of /dev/{name}",
                           f"name the whole disk: /dev/{name}")
    model = " ".join(p for p in (_sys(name, "device/vendor"), _sys(name, "device/model")) if p)
    if not model and _sys(name, "loop/backing_file"):
        model = f"loop device of {_sys(name, 'loop/backing_file')}"
    size = int(_sys(name, "size") or 0) * 512
    return Stick(device, name, model or "unknown model", size)


def system_disks(paths: tuple[str, ...] = SYSTEM_PATHS) -> dict[str, str]:
    """Kernel disk name -> the mount of the running system it holds (/, /boot...)."""
    found: dict[str, str] = {}
    for path in paths:
        try:
            dev = os.stat(path).st_dev
        except OSError:
            continue
        if os.major(dev) != 0:
            found.setdefault(whole_disk(dev), path)
    return found


def check(device: str, needed: int) -> Stick:
    """The disk if it may be overwritten with `needed` bytes; StickRefused if not."""
    stick = describe(device)
    holds = system_disks().get(stick.name)
    if holds is not None:
        raise StickRefused(f"{device} ({stick.model}) holds the running system ({holds})",
                           "name the USB stick; `lsblk` lists the disks")
    reason = busy_reason(device, writable_only=False)
    if reason is not None:
        raise StickRefused(f"{device} ({stick.model}) is in use: {reason}",
                           "unmount its partitions first (or eject and replug it)")
    if stick.size < needed:
        raise StickRefused(f"{device} ({stick.model}) is too small: {stick.size:,} bytes, "
                           f"the ISO needs {needed:,}", "use a stick of at least that size")
    return stick


def write(iso: str, device: str, progress: Progress) -> WriteResult:
    """Write `iso` to `device`, flush it, and read it back from the device; the hashes
    must match."""
    total = os.path.getsize(iso)
    check(device, total)
    h = blake3()
    progress.phase("writing", total_bytes=total)
    try:
        fd = os.open(device, os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as e:
        raise StickRefused(f"cannot open {device} for writing: {e.strerror}",
                           "is it mounted or used by another program?") from None
    written = 0
    try:
        with open(iso, "rb") as src:
            while block := src.read(BLOCK):
                h.update(block)
                view = memoryview(block)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                written += len(block)
                progress.advance(nbytes=len(block))
        os.fsync(fd)
    except OSError as e:
        raise StickWriteError(f"writing {device} failed at byte {written:,}: {e.strerror}",
                              "the stick may be faulty or was pulled; try another") from None
    finally:
        os.close(fd)
    digest = h.hexdigest()
    back = read_back(device, total, progress)
    if back != digest:
        raise StickWriteError(f"{device} reads back different from the ISO",
                              "the stick is faulty or fake (smaller than it says); use "
                              "another")
    return WriteResult(device, written, digest)


def read_back(device: str, length: int, progress: Progress) -> str:
    """BLAKE3 of the first `length` bytes as the device holds them (its cache dropped)."""
    progress.phase("reading back", total_bytes=length)
    h = blake3()
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.ioctl(fd, _BLKFLSBUF)
        except OSError:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        left = length
        while left:
            block = os.read(fd, min(BLOCK, left))
            if not block:
                break
            h.update(block)
            left -= len(block)
            progress.advance(nbytes=len(block))
    finally:
        os.close(fd)
    return h.hexdigest()
