"""A disk file whose partitions are mounted read-write (ext4 through the kernel, FAT16
through fusefat), filled with every kind of entry, a writer changing files on both while
they are imaged, and a comparison of two trees (content and metadata)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.drives import IS_ROOT, run, tool

MiB = 1 << 20
SCRIPT = """label: gpt
size=100MiB, type=linux, name="root"
size=40MiB, type=uefi, name="EFI"
"""
DISK_SIZE = 200 * MiB  # 59 MiB free at the end: a smaller disk can still hold the data


@dataclass
class LiveDisk:
    """The disk file, its loop device and where its partitions are mounted."""

    image: Path
    dev: str
    root: Path  # ext4, partition 1
    esp: Path  # FAT16 through fusefat, partition 2


def need_live_tools() -> None:
    """Skip unless this machine can make and mount the live disk."""
    if not IS_ROOT:
        pytest.skip("needs root (loop devices, mount, fusefat)")
    if not os.path.exists("/dev/fuse") or not os.path.exists("/dev/loop-control"):
        pytest.skip("needs /dev/fuse and loop devices")
    for name in ("sfdisk", "losetup", "partx", "mkfs.ext4", "mkfs.fat", "fusefat",
                 "e2fsck", "fsck.fat", "setfattr", "setfacl", "setcap"):
        tool(name)


def _partition(dev: str, n: int) -> str:
    path = f"{dev}p{n}"
    for _ in range(100):
        if os.path.exists(path):
            return path
        subprocess.run(["partx", "-a", dev], capture_output=True, check=False)
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear")


@contextmanager
def live_disk(work: Path) -> Iterator[LiveDisk]:
    """The disk made, partitioned, formatted, mounted read-write and filled."""
    need_live_tools()
    image = work / "disk.img"
    with open(image, "wb") as f:
        f.truncate(DISK_SIZE)
    run("sfdisk", "-q", image, stdin=SCRIPT)
    dev = run("losetup", "-f", "-P", "--show", image).stdout.strip()
    root, esp = work / "root", work / "esp"
    root.mkdir()
    esp.mkdir()
    mounted: list[Path] = []
    try:
        run("mkfs.ext4", "-q", "-L", "livroot", _partition(dev, 1))
        run("mkfs.fat", "-F", "16", "-n", "LIVEESP", _partition(dev, 2))
        run("mount", _partition(dev, 1), root)
        mounted.append(root)
        run("fusefat", "-o", "rw+", _partition(dev, 2), esp)
        mounted.append(esp)
        fill(root, posix=True)
        fill(esp, posix=False)
        yield LiveDisk(image, dev, root, esp)
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", str(point)], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)


def fill(top: Path, posix: bool) -> None:
    """Folders, small and large files; with `posix` also links, devices, a FIFO, xattrs,
    owners, set-id modes, nanosecond times and a sparse file."""
    rnd = __import__("random").Random(7)
    for d in range(6):
        folder = top / f"dir{d}" / "sub"
        folder.mkdir(parents=True)
        for i in range(40):
            (folder / f"f{i}.txt").write_bytes(f"file {d}/{i}\n".encode() * (i + 1))
    (top / "big.bin").write_bytes(rnd.randbytes(3 * MiB + 12345))
    (top / "BOOT").mkdir()
    (top / "BOOT" / "loader.efi").write_bytes(rnd.randbytes(200_000))
    if not posix:
        return
    (top / "busy").mkdir()
    os.link(top / "big.bin", top / "dir0" / "big-link")
    os.symlink("../big.bin", top / "dir1" / "to-big")
    os.symlink("/nowhere/dangling", top / "dangling")
    os.mkfifo(top / "fifo")
    os.mknod(top / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    owned = top / "dir2" / "owned"
    owned.write_bytes(b"set-id\n")
    os.chown(owned, 1234, 5678)
    os.chmod(owned, 0o4755)
    run("setfattr", "-n", "user.note", "-v", "kept", top / "dir3")
    run("setfattr", "-n", "user.bin", "-v", "0x00ff10", owned)
    os.utime(top / "dir4" / "sub" / "f3.txt", ns=(1_600_000_000_123_456_789,
                                                   1_600_000_001_987_654_321))
    run("setfacl", "-m", "u:1234:rw", top / "dir5" / "sub" / "f1.txt")  # ACLs are xattrs
    run("setfacl", "-d", "-m", "g:5678:rx", top / "dir5")
    capable = top / "dir3" / "sub" / "f0.txt"  # a capability: lost if the owner came after
    os.chown(capable, 1234, 1234)
    run("setcap", "cap_net_raw+ep", capable)
    with open(top / "sparse", "wb") as f:
        f.seek(5 * MiB)
        f.write(b"end")


WRITER = """
import os, sys, time
paths = sys.argv[1:]
n = 0
while True:
    n += 1
    for p in paths:
        with open(p, "r+b" if os.path.exists(p) else "wb") as f:  # fusefat: no truncate
            f.write(str(n % 10).encode() * 300_000)
        with open(p + ".log", "ab") as f:
            f.write(b"%d\\n" % n)
    time.sleep(0.01)
"""


@contextmanager
def writer(*paths: Path) -> Iterator[None]:
    """A process that keeps rewriting `paths` in place (each a run of one digit) and
    appending to `path.log`, until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, *map(str, paths)])
    try:
        for _ in range(200):
            if all(p.exists() for p in paths):
                break
            time.sleep(0.02)
        yield
    finally:
        proc.kill()
        proc.wait()


def snapshot(top: Path, posix: bool, skip: tuple[str, ...] = ()) -> dict[str, tuple[object, ...]]:
    """Path -> (kind, mode, owner, times, xattrs, link, device, content hash, link group)
    of everything under `top` but `skip` prefixes (FAT: names, kind, content and mtime to 2 s)."""
    out: dict[str, tuple[object, ...]] = {}
    groups: dict[int, str] = {}
    for folder, dirs, files in os.walk(top):
        for name in sorted(dirs + files):
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, top)
            if rel.startswith(skip) or rel == "lost+found":
                continue
            st = os.lstat(full)
            digest = ""
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            if not posix:
                t = st.st_mtime_ns // 2_000_000_000 if stat.S_ISREG(st.st_mode) else 0
                out[rel] = (stat.S_IFMT(st.st_mode), digest, t)
                continue
            link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
            xattrs = {k: os.getxattr(full, k, follow_symlinks=False)
                      for k in os.listxattr(full, follow_symlinks=False)}
            group = groups.setdefault(st.st_ino, rel) if st.st_nlink > 1 and \
                not stat.S_ISDIR(st.st_mode) else ""
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, xattrs, link,
                        st.st_rdev if stat.S_ISCHR(st.st_mode) else 0, digest, group)
    return out


@contextmanager
def live_xfs(work: Path) -> Iterator[tuple[str, Path]]:
    """A disk file with one 320 MiB XFS partition (mkfs.xfs's least), mounted read-write
    and filled: (loop device, mount point)."""
    need_live_tools()
    tool("mkfs.xfs")
    tool("xfs_repair")
    image = work / "xfs-disk.img"
    with open(image, "wb") as f:
        f.truncate(330 * MiB)
    run("sfdisk", "-q", image, stdin="label: gpt\nsize=320MiB, type=linux\n")
    dev = run("losetup", "-f", "-P", "--show", image).stdout.strip()
    point = work / "xfs"
    point.mkdir()
    try:
        run("mkfs.xfs", "-q", "-L", "livexfs", _partition(dev, 1))
        run("mount", _partition(dev, 1), point)
        try:
            fill(point, posix=True)
            yield dev, point
        finally:
            subprocess.run(["umount", str(point)], capture_output=True, check=False)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)


CHANGER = """
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                               ctypes.c_char_p]
path = sys.argv[1]
fd = libc.fanotify_init(0x4 | 0x1, os.O_RDONLY)  # FAN_CLASS_CONTENT | FAN_CLOEXEC
if fd < 0 or libc.fanotify_mark(fd, 0x1, 0x20000, -100, path.encode()) < 0:
    print("no fanotify:", os.strerror(ctypes.get_errno()), flush=True)  # FAN_ACCESS_PERM
    sys.exit(1)
print("ready", flush=True)
while True:
    buf = os.read(fd, 4096)
    pos = 0
    while pos < len(buf):
        length, _v, _r, _m, _mask, efd, pid = struct.unpack_from("IBBHQii", buf, pos)
        if pid != os.getpid():
            with open(path, "ab") as f:  # the file grows under every read of it
                f.write(b"x")
        os.write(fd, struct.pack("iI", efd, 1))  # FAN_ALLOW
        os.close(efd)
        pos += length
"""


@contextmanager
def changing_on_read(path: Path) -> Iterator[None]:
    """`path` grows by a byte whenever anyone reads it (a fanotify permission listener
    appends before letting the read go on), until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", CHANGER, str(path)], text=True,
                            stdout=subprocess.PIPE)
    try:
        said = proc.stdout.readline() if proc.stdout else ""
        if said.strip() != "ready":
            pytest.skip(f"this kernel lets no process hold reads of a file ({said.strip()})")
        yield
    finally:
        proc.kill()
        proc.wait()
