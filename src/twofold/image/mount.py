"""`image mount` and `image umount`: start the image's FUSE file system (imagefs.py) in a
process of its own, mount each partition's file system read-only on its folder through a
read-only loop device (the kernel's ext2/3/4 with noload, XFS with norecovery, btrfs;
ntfs-3g, fusefat and exfat-fuse where the kernel has no driver), and take it all down
again in order: file systems, loop devices, then the image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field

from twofold.core.errors import TwofoldError, UsageError
from twofold.fsinfo.fsparams import fs_type
from twofold.fsinfo.loopmount import kernel_has
from twofold.image.errors import ImageRefused
from twofold.image.imagefs import shown
from twofold.image.repo import load_manifest, open_keyed, open_store
from twofold.vault.objects import PASSPHRASE_ENV

FUSE_TYPE = "fuse.twofold"
FUSE_DEVICE = "/dev/fuse"
_STARTUP_WAIT = 30.0  # seconds for the image's file system to appear
_KERNEL = {  # blkid type -> (kernel driver, read-only options that replay nothing)
    "ext2": ("ext4", "ro,noload"), "ext3": ("ext4", "ro,noload"),
    "ext4": ("ext4", "ro,noload"), "xfs": ("xfs", "ro,norecovery,nouuid"),
    "btrfs": ("btrfs", "ro,rescue=nologreplay"),
    "vfat": ("vfat", "ro"), "exfat": ("exfat", "ro"), "ntfs": ("ntfs3", "ro"),
}
_FUSE_DRIVER = {  # blkid type -> (FUSE driver, Debian package), where the kernel has none
    "vfat": ("fusefat", "fusefat"), "exfat": ("mount.exfat-fuse", "exfat-fuse"),
    "ntfs": ("ntfs-3g", "ntfs-3g"),
}


class MountRefused(ImageRefused):
    """The mount point cannot be used, or FUSE is missing: nothing was mounted (exit 1)."""


@dataclass
class PartMount:
    """What became of one partition."""

    label: str  # "partition 2 (ext4)"
    folder: str  # its folder under the mount point
    file: str | None  # its blocks as a file there (None: taken at file level)
    fs: str | None  # the file system found on it
    mounted: bool  # its files can be browsed in `folder`
    note: str = ""  # how it is shown, or why its file system is not mounted


@dataclass
class MountResult:
    """A mounted image."""

    image: str
    point: str
    pid: int
    parts: list[PartMount] = field(default_factory=list)
    disk_file: str | None = None


def check_fuse() -> None:
    """MountRefused unless /dev/fuse and libfuse 3 are there."""
    if not os.path.exists(FUSE_DEVICE):
        raise MountRefused(f"{FUSE_DEVICE} is missing: this system cannot mount FUSE file systems",
                           "install the package fuse3 (Debian, Ubuntu: apt install fuse3) "
                           "and load the fuse module (modprobe fuse)")
    try:
        import mfusepy  # noqa: F401  # loads libfuse
    except (ImportError, OSError) as err:
        raise MountRefused(f"libfuse 3 cannot be loaded: {err}",
                           "install the package fuse3 (apt install fuse3)") from None


def check_point(point: str) -> None:
    """MountRefused unless `point` is an empty folder that is not a mount point."""
    if not os.path.isdir(point):
        raise UsageError(f"mount point {point} is not a folder",
                         "make an empty folder for it (mkdir)")
    if os.path.ismount(point):
        raise MountRefused(f"{point} is already a mount point",
                           "unmount it first (twofold image umount, or umount), or choose "
                           "another empty folder")
    if os.listdir(point):
        raise MountRefused(f"mount point {point} is not empty",
                           "choose an empty folder: files in it would be hidden")


def mount_image(target: str, image: str, point: str, log: str | None = None,
                endpoint: str | None = None, passphrase: bytes | None = None) -> MountResult:
    """Mount `image` of the store at `target` on the empty folder `point`, each
    partition's file system beneath it where a driver can; the image's file system
    keeps running in its own process after this returns (`log`: where it writes what
    goes wrong, such as a damaged chunk; None: this process's stderr; `endpoint`: an S3
    endpoint for a non-AWS store; `passphrase`: an encrypted store's, handed to the
    file system's process in its environment)."""
    point = os.path.abspath(point)
    check_point(point)
    check_fuse()
    store = open_store(open_keyed(target, endpoint, passphrase))
    m = load_manifest(store.objects, image)  # ImageNotFound before anything starts
    out = open(log, "ab") if log else None  # noqa: SIM115  # handed to the child
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "twofold.image.imagefs", target, image, point],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            env={**os.environb, **({b"AWS_ENDPOINT_URL": endpoint.encode()} if endpoint else {}),
                 **({PASSPHRASE_ENV.encode(): passphrase} if passphrase else {})})
    finally:
        if out is not None:
            out.close()
    try:
        _wait_mounted(server, point, log)
    except BaseException:  # Ctrl-C while it starts: it must not come up after we left
        server.kill()
        server.wait()
        if is_mounted(point):
            _unmount(point)
        raise
    result = MountResult(image, point, server.pid)
    from twofold.image.imagefs import disk_file

    result.disk_file = disk_file(m)
    try:
        for s in shown(m):
            folder = os.path.join(point, s.folder)
            if s.file is None:
                result.parts.append(PartMount(s.area.label, s.folder, None,
                                              str((s.area.files or {})["params"]["type"]),
                                              True, "taken at file level: its files shown"))
                continue
            part = PartMount(s.area.label, s.folder, s.file, s.area.fs, False)
            _mount_fs(os.path.join(point, s.file), folder, part)
            result.parts.append(part)
    except BaseException:
        unmount_all(point)
        raise
    return result


def _wait_mounted(server: subprocess.Popen[bytes], point: str, log: str | None) -> None:
    deadline = time.monotonic() + _STARTUP_WAIT
    while not is_mounted(point):
        if server.poll() is not None:
            said = ""
            if log:
                with open(log, "rb") as f:
                    said = ": " + f.read().decode(errors="replace").strip()[-400:]
            raise MountRefused(f"the image's file system could not be mounted on {point}"
                               f"{said}")
        if time.monotonic() > deadline:
            raise MountRefused(f"the image's file system did not appear on {point} in "
                               f"{_STARTUP_WAIT:.0f} s")
        time.sleep(0.05)


def _mount_fs(file: str, folder: str, part: PartMount) -> None:
    """Mount the file system in `file` read-only on `folder` through a read-only loop
    device; on failure, say why in part.note (the file stays)."""
    try:
        loop = _run(["losetup", "-r", "-f", "--show", file]).strip()
    except OSError as err:
        part.note = f"no loop device for it ({err}): shown as a file only"
        return
    try:
        kind = fs_type(loop) or part.fs
    except TwofoldError:
        kind = part.fs
    kind = "vfat" if kind in ("fat12", "fat16", "fat32") else kind
    part.fs = part.fs or kind
    try:
        if kind is None:
            raise OSError("no file system found on it")
        if kind in _KERNEL and kernel_has(_KERNEL[kind][0]):
            driver, options = _KERNEL[kind]
            _run(["mount", "-t", driver, "-o", options, loop, folder])
        elif kind in _FUSE_DRIVER:
            tool, package = _FUSE_DRIVER[kind]
            if shutil.which(tool) is None:
                raise OSError(f"this kernel has no {kind} driver and {tool} is not "
                              f"installed (package {package})")
            _run([tool, "-o", "ro", loop, folder])
            _wait_for(folder)
        else:
            raise OSError(f"no driver here mounts {kind}")
    except OSError as err:
        _detach(loop)
        part.note = f"its file system is not mounted: {err}; {os.path.basename(file)} " \
                    "holds its blocks"
        return
    part.mounted = True
    part.note = f"{kind} mounted read-only"


def _wait_for(folder: str) -> None:
    for _ in range(200):
        if os.path.ismount(folder):
            return
        time.sleep(0.05)
    raise OSError(f"the driver did not mount {folder}")


def _run(args: list[str]) -> str:
    """A tool's output; OSError with what it said when it fails or is missing."""
    if shutil.which(args[0]) is None:
        raise OSError(f"{args[0]} is not installed")
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace", check=False,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise OSError(f"{args[0]} failed: {said[-1] if said else proc.returncode}")
    return proc.stdout


def _detach(loop: str) -> None:
    with suppress(OSError):
        _run(["losetup", "-d", loop])


def _mounts() -> list[tuple[str, str]]:
    """(mount point, file system type) of every mount, in mount order."""
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            sep = fields.index(b"-")
            where = fields[4].decode("unicode_escape").encode("latin-1")
            out.append((os.fsdecode(where), fields[sep + 1].decode()))
    return out


def is_mounted(point: str) -> bool:
    """True while an image is mounted on `point` (an absolute path)."""
    return any(p == point and kind == FUSE_TYPE for p, kind in _mounts())


def unmount_all(point: str) -> list[str]:
    """Unmount everything `image mount` mounted at `point`: the partitions' file
    systems (deepest first), their loop devices, then the image's own file system, whose
    process then ends. Returns what was unmounted or detached; MountRefused when `point`
    holds no mounted image."""
    point = os.path.abspath(point)
    if not is_mounted(point):
        raise MountRefused(f"no twofold image is mounted on {point}",
                           "twofold image mount STORE IMAGE MOUNTPOINT mounts one")
    done = []
    below = [p for p, _kind in _mounts() if p.startswith(point + "/")]
    for where in sorted(below, key=lambda p: -p.count("/")):
        _unmount(where)
        done.append(where)
    for loop in _loops_under(point):
        _run(["losetup", "-d", loop])
        done.append(loop)
    _unmount(point)
    done.append(point)
    return done


def _unmount(where: str) -> None:
    for attempt in range(50):  # a FUSE driver may still hold it for a moment
        try:
            _run(["umount", where])
            return
        except OSError as err:
            if attempt == 49:
                raise MountRefused(f"{where} cannot be unmounted: {err}",
                                   "close what still uses it (a shell or a program open in "
                                   "it; fuser -vm shows which), then run twofold image "
                                   "umount again") from None
            time.sleep(0.1)


def _loops_under(point: str) -> list[str]:
    """Loop devices whose backing file is beneath `point`."""
    try:
        listed = json.loads(_run(["losetup", "-l", "-J", "-O", "NAME,BACK-FILE"]) or "{}")
    except (OSError, ValueError):
        return []
    return [d["name"] for d in listed.get("loopdevices", [])
            if str(d.get("back-file") or "").startswith(point + "/")]
