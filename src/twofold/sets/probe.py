"""Find out what a target drive can hold by trying it, once, in a scratch folder.

Drivers differ from what their filesystem allows on paper (fusefat takes ASCII names only,
exfat-fuse refuses `:` with ENOENT, ntfs-3g takes `:` that Windows then cannot open), so
every answer comes from an attempt on the drive itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable

from twofold.core.names import WINDOWS_CHARS, TargetProfile
from twofold.fsinfo.meta import IS_ROOT

PROBE_DIR = b".probe"
FAT32_MAX = (4 << 30) - 1
_FAT_TYPES = ("vfat", "msdos", "fat", "fuse.fusefat", "fat32", "fat16", "fat12")
_PROBE_MTIME = 1_700_000_001_123_456_789  # odd second, every ns digit set
_ASCII_TRIES = WINDOWS_CHARS + "\x01"


def _mount_of(path: bytes) -> tuple[str, bytes]:
    """The type and device /proc/mounts gives for the mount holding `path`."""
    real = os.path.realpath(path)
    best, kind, device = b"", "unknown", b""
    try:
        with open("/proc/self/mounts", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return kind, device
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace(b"\\040", b" ")
        if (real == mnt or real.startswith(mnt.rstrip(b"/") + b"/")) and len(mnt) >= len(best):
            best, kind, device = mnt, parts[2].decode(errors="replace"), parts[0]
    return kind, device


def mount_type(path: bytes) -> str:
    """The filesystem type of the mount holding `path` ("unknown"); for a FUSE mount of a
    device or image, what blkid finds on it (exfat, ntfs ...)."""
    kind, device = _mount_of(path)
    if kind in ("fuse", "fuseblk") and device.startswith(b"/"):
        kind = _blkid_type(device) or kind
    return kind


def through_fuse(path: bytes) -> bool:
    """True when `path` is on a drive mounted through FUSE (exfat-fuse, ntfs-3g ...)."""
    return _mount_of(path)[0].startswith("fuse")


def _blkid_type(device: bytes) -> str | None:
    """What blkid says a FUSE drive's device (or image file) holds: exfat, ntfs ..."""
    try:
        got = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", device],
                             capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return got.stdout.decode(errors="replace").strip() or None


def _can_create(folder: bytes, name: bytes) -> bool:
    path = os.path.join(folder, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except (OSError, ValueError):
        return False
    os.close(fd)
    ok = os.path.basename(path) in os.listdir(folder)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return ok


def _granularity(path: bytes) -> int:
    """The step in which the drive keeps modification times, in ns."""
    os.utime(path, ns=(_PROBE_MTIME, _PROBE_MTIME))
    back = os.stat(path).st_mtime_ns
    for step in (1, 100, 1_000, 1_000_000, 10_000_000, 1_000_000_000, 2_000_000_000):
        if back == _PROBE_MTIME - _PROBE_MTIME % step:
            return step
    return 2_000_000_000


def _rewrites(path: bytes) -> bool:
    """True when a file reopened and grown by writes at offsets reads back as written
    (the way SQLite writes; fusefat loses such data)."""
    blocks = [bytes([65 + i]) * 4096 for i in range(3)]
    with open(path, "wb") as f:
        f.write(blocks[0])
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, blocks[1], 4096)
        os.pwrite(fd, blocks[2], 8192)
    finally:
        os.close(fd)
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, blocks[0], 12288)
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        return f.read() == b"".join(blocks) + blocks[0]


def _owner_of(path: bytes) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid


def _tries(action: Callable[[], object]) -> bool:
    try:
        action()
    except (OSError, NotImplementedError):
        return False
    return True


def probe(root: bytes) -> TargetProfile:
    """What the filesystem holding folder `root` can hold (root must exist, writable)."""
    folder = os.path.join(root, PROBE_DIR)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    try:
        return _probe_in(folder, mount_type(root))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _probe_in(folder: bytes, fs_type: str) -> TargetProfile:
    probe_file = os.path.join(folder, b"Probe-Case")
    with open(probe_file, "wb") as f:
        f.write(b"twofold")
    case_insensitive = os.path.exists(os.path.join(folder, b"PROBE-CASE"))
    symlinks = _tries(lambda: os.symlink(b"Probe-Case", os.path.join(folder, b"link")))
    hardlinks = _tries(lambda: os.link(probe_file, os.path.join(folder, b"hard")))
    modes = _tries(lambda: os.chmod(probe_file, 0o640)) and \
        stat.S_IMODE(os.stat(probe_file).st_mode) == 0o640
    owners = False
    if IS_ROOT:
        owners = _tries(lambda: os.chown(probe_file, 4321, 4322)) and \
            _owner_of(probe_file) == (4321, 4322)
    xattrs = hasattr(os, "setxattr") and _tries(
        lambda: os.setxattr(probe_file, "user.twofold", b"1"))
    granularity = _granularity(probe_file)
    rewrites = _rewrites(os.path.join(folder, b"rewrite"))
    refused = "".join(c for c in _ASCII_TRIES if not _can_create(folder, f"a{c}b".encode()))
    unicode_names = _can_create(folder, "é".encode())
    bytes_names = _can_create(folder, b"b\xff")
    long_utf16 = _can_create(folder, "é".encode() * 200)  # 400 bytes, 200 UTF-16 units
    fat = fs_type in _FAT_TYPES or granularity == 2_000_000_000
    windows = bool(refused) or not modes or fat or not symlinks
    notes = []
    if refused:
        notes.append(f"refuses {refused!r} in names")
    return TargetProfile(
        fs_type="fat32" if fat and fs_type.startswith("fuse") else fs_type,
        case_insensitive=case_insensitive, symlinks=symlinks, hardlinks=hardlinks,
        modes=modes, owners=owners, xattrs=xattrs, mtime_granularity_ns=granularity,
        max_file_size=FAT32_MAX if fat else None,
        name_max=255, name_units="utf16" if long_utf16 or windows else "bytes",
        windows_names=windows, unicode_names=unicode_names, bytes_names=bytes_names,
        refused_chars="" if windows else refused, rewrites=rewrites,
        notes=notes)
