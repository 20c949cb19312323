"""What the guided restore finds: drives holding a store (mounted read-only under
/run/twofold/...), and the disks an image may be written to, with what is on them and
why a disk is not allowed (it holds the store, it is the rescue stick, it is in use)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from twofold.core.errors import TargetError
from twofold.fsinfo.disk import whole_disk
from twofold.image.source import busy_reason
from twofold.jobs.drives import Drive, blkid, list_drives
from twofold.rescue.usb import describe, system_disks

MOUNT_BASE = Path("/run/twofold/drives")
LIVE_MEDIUM = "/run/live/medium"
STORE_DIR = "twofold-images"
SETS_DIR = "twofold"
SKIP_FS = {"swap", "iso9660", "squashfs", "LVM2_member", "crypto_LUKS", "linux_raid_member"}


@dataclass
class FoundStore:
    """A place holding images or backup sets: a drive's file system or a typed-in store."""

    where: str  # mount point, folder or URL
    device: str = ""  # /dev/sdb1; "" when typed in
    disk: str = ""  # kernel name of the device's whole disk
    about: str = ""  # model, file system, label
    images: bool = False
    sets: list[str] = field(default_factory=list)
    ours: bool = False  # mounted by the scan (and unmounted by release)

    def title(self) -> str:
        """How the store is named in lists."""
        what = [w for w in ("images" if self.images else "",
                            f"backup sets: {', '.join(self.sets)}" if self.sets else "") if w]
        head = f"{self.device} ({self.about})" if self.device else self.where
        return f"{head}: {'; '.join(what) or 'nothing of twofold'}"


@dataclass
class TargetDisk:
    """A whole disk an image could be restored to."""

    path: str
    name: str
    model: str
    size: int
    contents: str
    refused: str | None = None


def drives() -> list[Drive]:
    """The block devices, file system facts probed afresh (udev's may be stale)."""
    found = list_drives()
    if os.geteuid() == 0:
        for d in found:
            if d.type != "rom":
                probe = blkid(d.path)
                d.fstype, d.label = probe.get("TYPE"), probe.get("LABEL")
    return found


def _disk_of(path: str) -> str:
    try:
        return whole_disk(os.stat(path).st_rdev)
    except OSError:
        return ""


def _wanted(drive: Drive, only: list[str] | None) -> bool:
    if only is None:
        return True
    disks = {_disk_of(o) for o in only}
    return drive.path in only or _disk_of(drive.path) in disks


def mount_ro(device: str, fstype: str | None, point: Path) -> bool:
    """Mount `device` read-only at `point` (ext journals are not replayed; FUSE drivers
    where the kernel lacks one); False if it cannot be mounted."""
    point.mkdir(parents=True, exist_ok=True)
    tries = [["mount", "-o", "ro,noload", device, str(point)]] if fstype and \
        fstype.startswith("ext") else []
    tries.append(["mount", "-o", "ro", device, str(point)])
    fuse = {"ntfs": ["ntfs-3g", "-o", "ro"], "exfat": ["mount.exfat-fuse", "-o", "ro"],
            "vfat": ["fusefat", "-o", "ro"]}
    if fstype in fuse:
        tries.append([*fuse[fstype], device, str(point)])
    for cmd in tries:
        try:
            if subprocess.run(cmd, capture_output=True, timeout=60, check=False).returncode == 0:
                return True
        except (OSError, subprocess.TimeoutExpired):
            continue
    point.rmdir()
    return False


def unmount(point: str) -> None:
    """Unmount a folder the scan mounted, and remove it."""
    subprocess.run(["umount", point], capture_output=True, check=False)
    if not os.path.ismount(point):
        with contextlib.suppress(OSError):
            os.rmdir(point)


def look(store: FoundStore) -> FoundStore:
    """Fill in what the store's folder holds (images, backup sets)."""
    base = Path(store.where)
    store.images = (base / STORE_DIR).is_dir()
    sets = base / SETS_DIR
    store.sets = sorted(p.name for p in sets.iterdir()
                        if (p / "catalog.sqlite").is_file()) if sets.is_dir() else []
    return store


def scan(base: Path = MOUNT_BASE, only: list[str] | None = None) -> list[FoundStore]:
    """Every file system holding twofold images or backup sets; file systems not
    mounted yet are mounted read-only under `base` (those holding nothing are unmounted
    again). `only` limits the scan to these devices (and their partitions)."""
    live = _disk_of_mount(LIVE_MEDIUM)
    found: list[FoundStore] = []
    for d in drives():
        if not d.fstype or d.fstype in SKIP_FS or d.type == "rom" or not _wanted(d, only):
            continue
        disk = _disk_of(d.path)
        if live and disk == live:
            continue
        about = ", ".join(x for x in (d.model, d.fstype, f'"{d.label}"' if d.label else "")
                          if x)
        system_mount = d.mountpoint and not d.mountpoint.startswith(str(MOUNT_BASE.parent))
        store = FoundStore(d.mountpoint or "", d.path, disk, about)
        if not system_mount:  # not mounted, or by the guide on another console: mount
            point = base / os.path.basename(d.path)
            if not mount_ro(d.path, d.fstype, point):
                continue
            store.where, store.ours = str(point), True
        look(store)
        if store.images or store.sets:
            found.append(store)
        elif store.ours:
            unmount(store.where)
    return found


def release(stores: list[FoundStore]) -> None:
    """Unmount what the scan mounted."""
    for s in stores:
        if s.ours:
            unmount(s.where)
            s.ours = False


def _disk_of_mount(point: str) -> str:
    try:
        dev = os.stat(point).st_dev
    except OSError:
        return ""
    return whole_disk(dev) if os.path.ismount(point) and os.major(dev) else ""


def _contents(drives: list[Drive], name: str) -> str:
    parts = [d for d in drives if d.type == "part" and _disk_of(d.path) == name]
    if not parts:
        whole = [d for d in drives if _disk_of(d.path) == name and d.fstype]
        return f"{whole[0].fstype}, no partitions" if whole else "empty or unknown"
    words = []
    for p in parts:
        label = f' "{p.label}"' if p.label else ""
        words.append(f"{os.path.basename(p.path)} {p.fstype or '?'}{label} "
                     f"{p.size / 1e9:.1f} GB")
    return f"{len(parts)} partition(s): " + ", ".join(words)


def targets(stores: list[FoundStore], only: list[str] | None = None) -> list[TargetDisk]:
    """The whole disks, each with what is on it and why it may not be written to."""
    every = drives()
    live = _disk_of_mount(LIVE_MEDIUM)
    system = system_disks() if not live else {}
    holding = {s.disk: s.device for s in stores if s.disk}
    found = []
    for d in every:
        if d.type not in ("disk", "loop") or not _wanted(d, only) or d.size == 0:
            continue
        name = os.path.basename(d.path)
        if name.startswith(("zram", "ram", "sr")):
            continue
        info = describe(d.path)
        t = TargetDisk(d.path, name, info.model, info.size, _contents(every, name))
        if name in holding:
            t.refused = f"it holds the store being read ({holding[name]})"
        elif live and name == live:
            t.refused = "it is the stick the rescue system runs from"
        elif name in system:
            t.refused = f"it holds the running system ({system[name]})"
        else:
            reason = busy_reason(d.path, writable_only=False)
            t.refused = f"it is in use: {reason}" if reason else None
        found.append(t)
    return found


@dataclass
class FileSystem:
    """A file system a backup set can be restored into."""

    device: str
    fstype: str
    label: str
    size: int
    refused: str | None = None


def file_systems(stores: list[FoundStore], only: list[str] | None = None) -> list[FileSystem]:
    """File systems on the disks (not the store's own, not the rescue stick's)."""
    live = _disk_of_mount(LIVE_MEDIUM)
    holding = {s.disk for s in stores if s.disk}
    found = []
    for d in drives():
        if not d.fstype or d.fstype in SKIP_FS or not _wanted(d, only):
            continue
        disk = _disk_of(d.path)
        fs = FileSystem(d.path, d.fstype, d.label or "", d.size)
        if disk in holding:
            fs.refused = "it is on the disk holding the store"
        elif live and disk == live:
            fs.refused = "it is on the rescue stick"
        found.append(fs)
    return found


def mount_rw(device: str, fstype: str, point: Path) -> None:
    """Mount `device` read-write at `point` (NTFS through ntfs-3g); TargetError if not."""
    point.mkdir(parents=True, exist_ok=True)
    cmd = ["ntfs-3g", device, str(point)] if fstype == "ntfs" else \
        ["mount", device, str(point)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if r.returncode != 0 and fstype in ("exfat", "vfat"):  # no kernel driver: FUSE
        fuse = ["mount.exfat-fuse"] if fstype == "exfat" else ["fusefat", "-o", "rw+"]
        r = subprocess.run([*fuse, device, str(point)], capture_output=True, text=True,
                           timeout=120, check=False)
    if r.returncode != 0:
        with contextlib.suppress(OSError):
            point.rmdir()
        raise TargetError(f"cannot mount {device} ({fstype}): {r.stderr.strip()}",
                          "check it with its fsck, or choose another file system")


def kernel_options(path: str = "/proc/cmdline") -> dict[str, str]:
    """`twofold.KEY=VALUE` words of the kernel command line, as {KEY: VALUE}."""
    try:
        words = Path(path).read_text().split()
    except OSError:
        return {}
    return {k.removeprefix("twofold."): v for k, _, v in (w.partition("=") for w in words)
            if k.startswith("twofold.")}


def power(action: str) -> None:
    """Reboot or power off the rescue system now (after a sync)."""
    os.sync()
    cmd = {"reboot": 0x01234567, "poweroff": 0x4321FEDC}[action]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.reboot(ctypes.c_int(cmd))


def settle(timeout: int = 30) -> None:
    """Wait until udev has handled the devices found at start (drivers loaded, /dev/disk
    links made); the rescue system starts its consoles before that (best effort)."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(["udevadm", "settle", f"--timeout={timeout}"], capture_output=True,
                       timeout=timeout + 10, check=False)


def network_up() -> None:
    """Bring the wired network up by DHCP (best effort: a store that still cannot be
    reached says so when it is opened)."""
    for iface in sorted(os.listdir("/sys/class/net")):
        if iface != "lo":
            subprocess.run(["ip", "link", "set", iface, "up"], capture_output=True,
                           check=False)
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(["dhcpcd", "-4", "--oneshot", "--waitip=4", "--timeout", "30"],
                       capture_output=True, timeout=60, check=False)


def firmware(sys_dir: str = "/sys/firmware/efi") -> str:
    """BIOS, or UEFI with Secure Boot on or off (from the SecureBoot EFI variable)."""
    if not os.path.isdir(sys_dir):
        return "BIOS"
    for var in Path(sys_dir, "efivars").glob("SecureBoot-*"):
        with contextlib.suppress(OSError):
            on = var.read_bytes()[4:5] == b"\x01"  # 4 bytes of attributes, then the value
            return f"UEFI, Secure Boot {'on' if on else 'off'}"
    return "UEFI"


def main_console(active: str = "/sys/class/tty/console/active") -> str | None:
    """The terminal of /dev/console (the last console= of the kernel command line, tty0
    as tty1), or None when unknown."""
    try:
        names = Path(active).read_text().split()
    except OSError:
        return None
    if not names:
        return None
    return "/dev/" + ("tty1" if names[-1] == "tty0" else names[-1])


def on_main_console(fd: int = 0) -> bool:
    """True when `fd` is the main console's terminal (or that cannot be told)."""
    main = main_console()
    try:
        mine = os.ttyname(fd)
    except OSError:
        return True
    return main is None or os.path.realpath(mine) == os.path.realpath(main)
