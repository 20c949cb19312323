"""A stretch of a disk or file as a loop device, and a file system mounted from it in a
temporary folder (the kernel's driver, or fusefat where the kernel has no vfat)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from twofold.fsinfo.fsparams import FAT, FsToolError


def _run(args: list[str], what: str) -> str:
    if shutil.which(args[0]) is None:
        raise FsToolError(f"{args[0]} is not installed; it is needed to {what}")
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        raise FsToolError(f"{' '.join(args)} failed while trying to {what}: "
                          f"{(proc.stderr or proc.stdout).strip()[-400:]}",
                          "is this a root shell, with loop devices (modprobe loop)?")
    return proc.stdout


@contextmanager
def loop_device(path: str, offset: int, size: int) -> Iterator[str]:
    """`size` bytes of `path` from `offset` as a loop device, detached afterwards."""
    dev = _run(["losetup", "-f", "--show", "-o", str(offset), "--sizelimit", str(size),
                path], "make a loop device").strip()
    try:
        yield dev
    finally:
        _run(["losetup", "-d", dev], "detach the loop device")


def kernel_has(kind: str) -> bool:
    """True when the running kernel has a driver for the file system `kind`."""
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == kind for line in f if line.strip())
    except OSError:
        return False


@contextmanager
def mounted(kind: str, device: str) -> Iterator[str]:
    """The file system on `device` mounted read-write in a new temporary folder."""
    point = tempfile.mkdtemp(prefix="twofold-restore-")
    driver: subprocess.Popen[bytes] | None = None
    try:
        if kind in FAT and not kernel_has("vfat"):
            driver = _fuse_mount(["fusefat", "-f", "-o", "rw+", device, point], point)
            umount = ["fusermount", "-u", point]
        else:
            # XFS refuses a second mount of the same UUID (the source is still mounted)
            extra = ["-o", "nouuid"] if kind == "xfs" else []
            _run(["mount", "-t", kind, *extra, device, point], f"mount {kind}")
            umount = ["umount", point]
        try:
            yield point
        finally:
            os.sync()
            _run(umount, "unmount the restored file system")
            if driver is not None:
                driver.wait(60)  # it has written everything back once it has ended
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        with suppress(OSError):
            os.rmdir(point)


def _fuse_mount(args: list[str], point: str) -> subprocess.Popen[bytes]:
    """Start a FUSE driver in the foreground (so its end can be waited for) and wait
    until its mount appears."""
    if shutil.which(args[0]) is None:
        raise FsToolError(f"{args[0]} is not installed; it is needed to mount FAT here",
                          "install fusefat (the kernel has no vfat driver)")
    with tempfile.TemporaryFile() as log:  # a pipe nobody reads would stall its chatter
        driver = subprocess.Popen(args, stdout=log, stderr=log)
        for _ in range(200):
            if os.path.ismount(point):
                return driver
            if driver.poll() is not None:
                break
            time.sleep(0.05)
        driver.kill()
        driver.wait()
        log.seek(0)
        said = log.read().decode(errors="replace").strip()[-300:]
    raise FsToolError(f"{args[0]} could not mount the restored file system: {said}")
