"""Drives: list block devices (lsblk, blkid where udev is absent), find where a
UUID=/LABEL= target is mounted, mount it with udisksctl, and eject it safely."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from twofold.core.errors import TargetError, UsageError
from twofold.jobs.config import drive_of

LSBLK_COLUMNS = "NAME,PATH,MODEL,SIZE,FSTYPE,LABEL,UUID,MOUNTPOINT,RM,HOTPLUG,TRAN,TYPE"


@dataclass
class Drive:
    """One block device holding (or able to hold) a file system."""

    path: str
    model: str | None
    size: int
    fstype: str | None
    label: str | None
    uuid: str | None
    mountpoint: str | None
    external: bool  # removable, hot-pluggable or on USB
    type: str


def parse_lsblk(text: str) -> list[Drive]:
    """Flatten `lsblk --json -b` output; partitions inherit their disk's model and
    externality."""
    found: list[Drive] = []

    def walk(dev: dict[str, object], parent: Drive | None) -> None:
        external = bool(dev.get("rm") or dev.get("hotplug") or dev.get("tran") == "usb"
                        or (parent and parent.external))
        model = dev.get("model") or (parent.model if parent else None)
        d = Drive(path=str(dev.get("path") or f"/dev/{dev.get('name')}"),
                  model=str(model).strip() if model else None,
                  size=int(str(dev.get("size") or 0)),
                  fstype=_opt(dev.get("fstype")), label=_opt(dev.get("label")),
                  uuid=_opt(dev.get("uuid")), mountpoint=_opt(dev.get("mountpoint")),
                  external=external, type=str(dev.get("type") or ""))
        found.append(d)
        for child in dev.get("children") or []:  # type: ignore[attr-defined]
            walk(child, d)

    for dev in json.loads(text).get("blockdevices", []):
        walk(dev, None)
    return found


def _opt(value: object) -> str | None:
    return None if value in (None, "") else str(value)


def _run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def blkid(path: str, offset: int = 0, size: int | None = None) -> dict[str, str]:
    """TYPE, UUID, LABEL of the file system on `path` (probed; {} when none), or of the
    one in [offset, offset + size) of it."""
    if not shutil.which("blkid"):
        return {}
    where = ["-O", str(offset), "-S", str(size)] if size is not None else []
    r = _run("blkid", "-p", "-o", "export", *where, path)
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def list_drives() -> list[Drive]:
    """Every block device; file system facts lsblk lacks (no udev) come from blkid."""
    r = _run("lsblk", "--json", "-b", "-o", LSBLK_COLUMNS)
    if r.returncode != 0:
        raise TargetError(f"lsblk failed: {r.stderr.strip()}")
    return _complete(parse_lsblk(r.stdout))


@dataclass
class PartFacts:
    """One partition of a disk's table, with the file system found in it."""

    number: int
    start: int
    size: int
    name: str  # the GPT partition name ("" for MBR)
    fstype: str | None
    label: str | None


def disk_facts(path: str) -> tuple[Drive, str, list[PartFacts]]:
    """The block device at `path` (model and size from lsblk), the kind of its partition
    table, and its partitions as the table says, each probed by blkid at its offset (this
    works where the kernel made no partition devices, and lsblk's cached facts may be
    stale where udev is absent)."""
    r = _run("lsblk", "--json", "-b", "--nodeps", "-o", LSBLK_COLUMNS, path)
    if r.returncode != 0:
        raise TargetError(f"lsblk cannot describe {path}: {r.stderr.strip()}")
    disk = parse_lsblk(r.stdout)[0]
    probe = blkid(path)
    disk.fstype, disk.label = probe.get("TYPE"), probe.get("LABEL")
    # here, not at the top: a backup imports this module and needs none of the tables
    from twofold.fsinfo.blockio import FileReader, LayoutError
    from twofold.fsinfo.parttable import parse_table

    try:
        with FileReader(path) as reader:
            table = parse_table(reader, reader.size)
    except (LayoutError, ValueError, OSError):
        return disk, "unreadable", []
    parts = []
    for p in table.partitions:
        if p.container:
            continue
        facts = blkid(path, p.start, p.size)
        parts.append(PartFacts(p.index, p.start, p.size, p.name or "", facts.get("TYPE"),
                               facts.get("LABEL")))
    return disk, table.kind, parts


def _complete(drives: list[Drive]) -> list[Drive]:
    """File system facts lsblk lacks (no udev) from blkid, and mount points."""
    for d in drives:
        if d.fstype is None and d.type not in ("rom",) and os.geteuid() == 0:
            probe = blkid(d.path)
            d.fstype, d.uuid = probe.get("TYPE"), probe.get("UUID")
            d.label = probe.get("LABEL")
        if d.mountpoint is None:
            d.mountpoint = mount_of_device(d.path)
    return drives


def parse_mountinfo(text: str) -> dict[str, str]:
    """'major:minor' -> the first mount point of that device, from /proc/self/mountinfo."""
    mounts: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[2] not in mounts and parts[3] == "/":
            mounts[parts[2]] = parts[4].encode().decode("unicode_escape")
    return mounts


def mount_of_device(device: str) -> str | None:
    """Where `device` is mounted (its root), or None."""
    try:
        rdev = os.stat(device).st_rdev
        text = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    except OSError:
        return None
    return parse_mountinfo(text).get(f"{os.major(rdev)}:{os.minor(rdev)}")


def device_of(kind: str, value: str) -> str | None:
    """The device holding the file system with this uuid or label, or None."""
    link = Path("/dev/disk") / f"by-{kind}" / value
    if link.exists():
        return os.path.realpath(link)
    if shutil.which("blkid"):
        r = _run("blkid", "-U" if kind == "uuid" else "-L", value)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip().splitlines()[0]
    return None


def is_disk(path: str) -> bool:
    """True when `path` is a block device (a disk or partition): a restore over it is
    confirmed by the user typing its name."""
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def locate(target: str) -> str | None:
    """The folder a target stands for now: a plain folder if it exists, or the mount
    point of its UUID=/LABEL= drive; None when absent."""
    drive = drive_of(target)
    if drive is None:
        path = os.path.expanduser(target)
        return path if os.path.isdir(path) else None
    device = device_of(*drive)
    return mount_of_device(device) if device else None


def resolve_target(target: str) -> str:
    """The folder for a target: a plain folder as written (the engine checks it), a
    UUID=/LABEL= drive's mount point, or an error that says what to connect."""
    if drive_of(target) is None:
        return target
    found = locate(target)
    if found is None:
        raise TargetError(f"the drive {target} is not connected or not mounted",
                          "connect it (`twofold drives` lists what is there)")
    return found


def wait_for_mount(target: str, seconds: float, poll: float = 1.0) -> str | None:
    """Wait up to `seconds` for a desktop to mount the drive, then mount it with
    udisksctl if that exists; the mount point, or None."""
    deadline = time.monotonic() + seconds
    while True:
        found = locate(target)
        if found or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    drive = drive_of(target)
    if found or drive is None:
        return found
    device = device_of(*drive)
    if device and shutil.which("udisksctl"):
        _run("udisksctl", "mount", "--no-user-interaction", "-b", device)
        return mount_of_device(device)
    return None


@dataclass
class Ejected:
    """What eject did."""

    device: str
    mountpoint: str | None
    powered_off: bool
    note: str


def eject(target: str) -> Ejected:
    """Flush, unmount and (with udisksctl) power off the drive holding `target`: a mount
    point, a device, or UUID=/LABEL=."""
    drive = drive_of(target)
    if drive:
        device = device_of(*drive)
    elif target.startswith("/dev/"):
        device = target
    else:
        device = _device_at(target)
    if not device or not os.path.exists(device):
        raise UsageError(f"no drive found for {target}", "give a mount point, a device, "
                         "UUID=... or LABEL=...; `twofold drives` lists them")
    mountpoint = mount_of_device(device)
    os.sync()
    udisks = shutil.which("udisksctl")
    if mountpoint:
        cmd = (["udisksctl", "unmount", "--no-user-interaction", "-b", device] if udisks
               else ["umount", mountpoint])
        r = _run(*cmd)
        if r.returncode != 0:
            raise TargetError(f"cannot unmount {mountpoint}: {r.stderr.strip()}",
                              "close the programs using the drive (`fuser -vm "
                              f"{mountpoint}` shows them) and try again")
    if udisks:
        r = _run("udisksctl", "power-off", "--no-user-interaction", "-b", device)
        if r.returncode == 0:
            return Ejected(device, mountpoint, True, "powered off")
        return Ejected(device, mountpoint, False, f"not powered off: {r.stderr.strip()}")
    return Ejected(device, mountpoint, False, "unmounted (udisksctl not installed, so the "
                   "drive is not powered off)")


def _device_at(path: str) -> str | None:
    """The block device mounted at `path` (its mount root), or None."""
    real = os.path.realpath(path)
    try:
        text = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 9 and parts[4].encode().decode("unicode_escape") == real:
            sep = parts.index("-")
            source = parts[sep + 2]
            if source.startswith("/dev/"):
                return source
    return None
