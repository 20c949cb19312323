"""Which file system a folder is on (device, mount point, type, UUID, label), whether that is
the system disk, and the guard that notices when a drive is gone in the middle of a run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from twofold.core.errors import TargetError

MOUNT_PARENTS = ("/media", "/mnt", "/run/media")
"""Where desktops and people mount external drives: a folder there that is not a mount
point is an empty mount point left on the system disk."""


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo."""

    dev: str  # "major:minor"
    root: str
    mountpoint: str
    fstype: str
    source: str


@dataclass(frozen=True)
class Volume:
    """The file system holding a folder."""

    dev: int
    mountpoint: str
    fstype: str
    source: str
    uuid: str | None
    label: str | None

    def name(self) -> str:
        """How a person knows the drive: its label, else its UUID, else its device."""
        return self.label or (f"UUID={self.uuid}" if self.uuid else self.source)


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (\\040 for a space)."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode(
        "utf-8", "surrogateescape")


def parse_mountinfo(text: str) -> list[Mount]:
    """Every mount of a /proc/self/mountinfo text, in order."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 10 or "-" not in parts[6:]:
            continue
        sep = parts.index("-", 6)
        found.append(Mount(parts[2], _unescape(parts[3]), _unescape(parts[4]),
                           parts[sep + 1], _unescape(parts[sep + 2])))
    return found


def mounts() -> list[Mount]:
    """The mounts this process sees (empty where /proc is absent)."""
    try:
        return parse_mountinfo(Path("/proc/self/mountinfo").read_text(encoding="utf-8"))
    except OSError:
        return []


def _inside(path: str, folder: str) -> bool:
    return folder in ("/", path) or path.startswith(folder.rstrip("/") + "/")


def mount_of(path: str) -> Mount | None:
    """The mount that holds `path` (the deepest one on its device)."""
    real = os.path.realpath(path)
    dev = os.stat(real).st_dev
    key = f"{os.major(dev)}:{os.minor(dev)}"
    best: Mount | None = None
    for m in mounts():
        if m.dev == key and _inside(real, m.mountpoint) and (
                best is None or len(m.mountpoint) >= len(best.mountpoint)):
            best = m
    return best


def fs_ids(device: str) -> tuple[str | None, str | None]:
    """(UUID, LABEL) of the file system on a block device, as udev reports them (blkid's
    case: upper case for FAT, exFAT and NTFS), or (None, None)."""
    if not device.startswith("/dev/") or not shutil.which("blkid"):
        return None, None
    try:
        r = subprocess.run(["blkid", "-p", "-o", "export", device], capture_output=True,
                           text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None, None
    found = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    return found.get("UUID") or None, found.get("LABEL") or None


def volume_of(path: str, ids: bool = True) -> Volume:
    """The file system holding `path`; its UUID and label only with `ids` (a process)."""
    real = os.path.realpath(path)
    dev = os.stat(real).st_dev
    m = mount_of(real)
    uuid, label = fs_ids(m.source) if (ids and m) else (None, None)
    return Volume(dev, m.mountpoint if m else "/", m.fstype if m else "",
                  m.source if m else "", uuid, label)


def on_system_disk(path: str) -> bool:
    """True when `path` is on the same file system as / (the disk the system runs from)."""
    return os.stat(os.path.realpath(path)).st_dev == os.stat("/").st_dev


def fstab_mountpoints(text: str | None = None) -> set[str]:
    """Mount points that /etc/fstab names (where a drive is meant to be)."""
    if text is None:
        try:
            text = Path("/etc/fstab").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    points = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and parts[1].startswith("/"):
            points.add(_unescape(parts[1]).rstrip("/") or "/")
    return points


def empty_mountpoint(path: str) -> str | None:
    """Why `path` looks like the place a drive is mounted when none is (a folder under
    /media, /mnt or /run/media on the system disk, or an fstab mount point not mounted),
    or None."""
    real = os.path.realpath(path)
    if os.path.ismount(real) or not on_system_disk(real):
        return None
    for folder in sorted(fstab_mountpoints()):
        if folder != "/" and _inside(real, folder) and not os.path.ismount(folder):
            return f"{folder} is a mount point in /etc/fstab, but nothing is mounted there"
    for parent in MOUNT_PARENTS:
        if _inside(real, parent) and real != parent:
            return (f"{real} is a folder on the system disk under {parent}, where "
                    "drives are mounted, but no drive is mounted there")
    return None


DRIVE_FILE = "drive.json"


@dataclass(frozen=True)
class DriveId:
    """What a set's folder or an image store says of the drive it was made on."""

    id: str
    uuid: str | None = None
    label: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """For drive.json, store.json and the host's memory."""
        return {"id": self.id, "uuid": self.uuid, "label": self.label}

    @classmethod
    def from_json(cls, data: object) -> DriveId | None:
        """None for anything but a dict with a string id."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            return None
        uuid, label = data.get("uuid"), data.get("label")
        return cls(data["id"], uuid if isinstance(uuid, str) else None,
                   label if isinstance(label, str) else None)

    def name(self) -> str:
        """The label, else UUID=..., else the id."""
        return self.label or (f"UUID={self.uuid}" if self.uuid else f"id {self.id[:8]}")


def new_drive_id(folder: str) -> DriveId:
    """A new random id, with the UUID and label of the file system holding `folder`."""
    vol = volume_of(folder)
    return DriveId(os.urandom(8).hex(), vol.uuid, vol.label)


def read_drive_id(path: str | bytes) -> DriveId | None:
    """The id in a drive.json file, or None (missing or damaged)."""
    with suppress(OSError, ValueError), open(path, "rb") as f:
        return DriveId.from_json(json.loads(f.read()))
    return None


class DriveGuard:
    """Notices that the drive under a folder went away during a run: a lazily unmounted
    or unplugged drive leaves its mount point as an empty folder on another file system,
    so the folder's device changes (one stat per check)."""

    def __init__(self, folder: str | bytes, drive: DriveId | None, where: str) -> None:
        self.folder = folder
        self.drive = drive  # what the folder says of its drive, once known
        self.where = where  # the target as the user named it
        self.dev = os.stat(folder).st_dev

    def check(self, read_id: Callable[[], DriveId | None] | None = None) -> None:
        """TargetError naming the drive when the folder is no longer on it; with `read_id`
        (before what makes a run complete), the id on the drive must be the same too."""
        try:
            same = os.stat(self.folder).st_dev == self.dev
        except OSError:
            same = False
        if same and read_id is not None and self.drive is not None:
            found = read_id()
            same = found is not None and found.id == self.drive.id
        if not same:
            name = self.drive.name() if self.drive else "holding the backup"
            raise TargetError(
                f"the drive {name} is gone: {self.where} is no longer on it",
                "nothing more was written; connect the drive again and run again "
                "(what was stored so far is kept and reused)")


def check_drive(target: str, found: bool, seen: DriveId | None, what: str,
                allow_system_disk: bool = False) -> None:
    """Refuse to start a set or store anew in a folder that is not its drive.

    `found`: the set or store is there (then this is its drive). `seen`: the drive it was
    last seen on, from this computer's memory, when it has run before. A first run into an
    empty mount point (a folder under /media, /mnt or /run/media on the system disk, or an
    fstab mount point with nothing mounted) needs `allow_system_disk`.
    """
    if found:
        return
    if seen is not None:
        here = ("an empty folder on the system disk" if on_system_disk(target) else
                f"a folder on another drive ({volume_of(target).name()})")
        raise TargetError(
            f"the drive {seen.name()} is not connected: {target} is {here}, and {what} "
            "that ran there before is not in it",
            "connect and mount the drive, then run again; to start it anew on this drive "
            "instead, pass --new-drive")
    reason = empty_mountpoint(target)
    if reason and not allow_system_disk:
        raise TargetError(
            f"no drive is connected at {target}: {reason}",
            "connect and mount the backup drive, then run again; to write to the system "
            "disk anyway, pass --allow-system-disk")
