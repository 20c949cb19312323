"""Real drives for tests: external tools, loop devices, and exFAT, NTFS and FAT32 file
systems made with mkfs and mounted through their FUSE drivers (root only)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NOT_ROOT_REASON = "needs root (loop devices and FUSE mounts)"


def tool(name: str) -> str:
    """The path of an external tool, looking in sbin too; skip the test when it is missing."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def run(
    *cmd: str | Path, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a tool (its name resolved with `tool`), capturing text output."""
    args = [tool(str(cmd[0])), *map(str, cmd[1:])]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextmanager
def loop_device(image: Path, sector_size: int | None = None) -> Iterator[str]:
    """Attach `image` to a free loop device for the duration (root only)."""
    args = ["-f", "--show", *(["-b", str(sector_size)] if sector_size else []), str(image)]
    dev = run("losetup", *args).stdout.strip()
    try:
        yield dev
    finally:
        run("losetup", "-d", dev, check=False)


@contextmanager
def mounted(cmd: list[str], mountpoint: Path) -> Iterator[Path]:
    """Mount with `cmd` (ending before the mount point) and unmount afterwards (root only)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    run(*cmd, mountpoint)
    try:
        yield mountpoint
    finally:
        got = subprocess.run(["umount", str(mountpoint)], check=False, capture_output=True)
        if got.returncode != 0 and b"busy" in got.stderr:  # never leave a mount behind
            subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)


DRIVES = ("exfat", "ntfs", "fat32")


def need_drive_tools(kind: str) -> None:
    """Skip unless this machine can make and mount a `kind` drive."""
    if not IS_ROOT:
        pytest.skip(f"a real {kind} drive {NOT_ROOT_REASON}")
    if not os.path.exists("/dev/fuse"):
        pytest.skip(f"no /dev/fuse: {kind} drives are mounted through FUSE")
    if kind == "exfat" and not os.path.exists("/dev/loop-control"):
        pytest.skip("no loop devices: exfat-fuse needs a block device")
    for name in {"exfat": ("mkfs.exfat", "mount.exfat-fuse", "losetup"),
                 "ntfs": ("mkfs.ntfs", "ntfs-3g"),
                 "fat32": ("mkfs.vfat", "fusefat")}[kind]:
        tool(name)


@contextmanager
def foreign_drive(kind: str, where: Path, size: str = "256M") -> Iterator[Path]:
    """A freshly made `kind` drive (exfat, ntfs or fat32) mounted at where/mnt."""
    need_drive_tools(kind)
    image = where / f"{kind}.img"
    run("truncate", "-s", size, image)
    mnt = where / "mnt"
    try:
        with ExitStack() as stack:
            if kind == "exfat":
                run("mkfs.exfat", image)
                dev = stack.enter_context(loop_device(image))
                yield stack.enter_context(mounted(["mount.exfat-fuse", dev], mnt))
            elif kind == "ntfs":
                run("mkfs.ntfs", "-q", "-F", "-f", image)
                yield stack.enter_context(mounted(["ntfs-3g", str(image)], mnt))
            else:
                run("mkfs.vfat", "-F", "32", image)
                yield stack.enter_context(mounted(["fusefat", "-o", "rw+", str(image)], mnt))
    finally:
        image.unlink(missing_ok=True)  # gigabytes once a 4 GiB file was written to it
