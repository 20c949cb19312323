"""Facts about the disks under paths: flushing a file system, same-disk detection, free space."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import sys
import threading

from twofold.fsinfo.children import note_fork_safe

AnyPath = str | bytes


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, loaded on first use (Linux only: it has syncfs)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # find_library runs ldconfig: only when the usual name fails
        try:
            return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        except OSError:
            return None


def can_syncfs() -> bool:
    """True where one call can flush a whole file system (Linux syncfs)."""
    libc = _libc()
    return libc is not None and hasattr(libc, "syncfs")


def syncfs(path: bytes | str) -> None:
    """Flush every written byte of the file system holding `path` to the device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if can_syncfs():
            libc = _libc()
            assert libc is not None
            if libc.syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), os.fsdecode(path))
        else:
            os.fsync(fd)
    finally:
        os.close(fd)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_NO_FLAG = (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP)  # kernel or file system lacks it


def rename_new(src: bytes, dst: bytes) -> bool:
    """Rename `src` to `dst` unless `dst` exists: True when renamed, False (nothing done)
    when `dst` exists. One system call where Linux's renameat2 takes RENAME_NOREPLACE, so a
    run that puts 100,000 new files does not look for each one first; elsewhere (and on
    file systems that refuse the flag) a look, then a rename."""
    libc = _libc()
    renameat2 = getattr(libc, "renameat2", None) if libc is not None else None
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, src, _AT_FDCWD, dst, _RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err not in _NO_FLAG:
            raise OSError(err, os.strerror(err), os.fsdecode(src), None, os.fsdecode(dst))
    if os.path.lexists(dst):
        return False
    os.rename(src, dst)
    return True


_FUSE_SUPER_MAGIC = 0x65735546


def on_fuse(fd: int) -> bool:
    """True when the open file lies on a FUSE file system (fusefat, exfat-fuse, ntfs-3g),
    whose drivers each handle direct and mixed writes their own way; False where the
    kernel cannot say."""
    libc = _libc()
    if libc is None:
        return False
    buf = ctypes.create_string_buffer(256)  # struct statfs, f_type first
    if libc.fstatfs(fd, buf) != 0:
        return False
    return ctypes.c_long.from_buffer(buf).value == _FUSE_SUPER_MAGIC


_SYS_CACHESTAT = 451  # Linux 6.5: the same number on every architecture but alpha


class _CachestatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Cachestat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


_cachestat_off: set[bool] = set()  # holds True once the kernel has said it has none


def none_cached(fd: int) -> bool:
    """True when the kernel says no page of the open file is in the page cache (Linux
    cachestat); False when some are, or where the kernel cannot say. Unlike a read with
    RWF_NOWAIT, asking starts no read of the file."""
    libc = None if _cachestat_off else _libc()
    if libc is None:
        return False
    whole, stat = _CachestatRange(0, 0), _Cachestat()
    if libc.syscall(_SYS_CACHESTAT, fd, ctypes.byref(whole), ctypes.byref(stat), 0) != 0:
        if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):  # an older kernel, a sandbox
            _cachestat_off.add(True)
        return False
    return int(stat.nr_cache) == 0


def makedirs_inside(top: AnyPath, path: AnyPath, what: str) -> None:
    """Make the folder `path` below `top`, and those missing between, but never `top`
    itself: its absence means the drive it was on is gone (a drive unmounted lazily
    mid-run leaves its empty mount point on the system disk, where os.makedirs would build
    the whole chain and the files to go in it would follow), and FileNotFoundError names
    `what` it was. An existing folder is fine, as with exist_ok."""
    top_b, path_b = os.fsencode(top).rstrip(b"/"), os.fsencode(path).rstrip(b"/")
    if path_b == top_b:
        if not os.path.isdir(top_b):
            raise _gone(what, top_b)
        return
    if not path_b.startswith(top_b + b"/"):
        raise ValueError(f"{os.fsdecode(path_b)!r} is not inside {os.fsdecode(top_b)!r}")
    try:
        os.mkdir(path_b)
        return
    except FileExistsError:
        if os.path.isdir(path_b):
            return
        raise
    except FileNotFoundError:
        pass
    missing = [path_b]
    parent = os.path.dirname(path_b)
    while not os.path.isdir(parent):
        if len(parent) <= len(top_b):
            raise _gone(what, top_b)
        missing.append(parent)
        parent = os.path.dirname(parent)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)


def _gone(what: str, top: bytes) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, f"{what} is gone (was the drive removed?)",
                             os.fsdecode(top))


def copy_durably(src: bytes | str, dst: bytes | str, buf: int = 1 << 20) -> None:
    """Write a new file `dst` with `src`'s bytes, from start to end (drivers such as
    fusefat lose data written at an offset of an existing file), and flush it."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(buf):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())


def fsync_dir(path: bytes | str) -> None:
    """Make a folder's entries (renames, creations) durable, where the platform allows."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some FUSE file systems refuse fsync on folders
    finally:
        os.close(fd)


def whole_disk(dev: int) -> str:
    """The sysfs name of the disk holding block device `dev` (a partition's parent)."""
    base = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    try:
        real = os.path.realpath(base)
    except OSError:
        return f"{os.major(dev)}:{os.minor(dev)}"
    if os.path.exists(os.path.join(real, "partition")):
        real = os.path.dirname(real)
    return os.path.basename(real)


def same_disk(a: bytes | str, b: bytes | str) -> bool:
    """True when `a` and `b` live on the same file system or the same physical disk."""
    da, db = os.stat(a).st_dev, os.stat(b).st_dev
    if da == db:
        return True
    if not sys.platform.startswith("linux") or os.major(da) == 0 or os.major(db) == 0:
        return False
    return whole_disk(da) == whole_disk(db)


READ_AHEAD_CHUNK = 1 << 20


def read_ahead(path: bytes | str) -> threading.Thread:
    """Read a file once from start to end in a background thread, so that the random
    reads that follow (SQLite's) find its pages in memory. Through a FUSE driver a cold
    catalog read in order took 0.2 s, and read page by page by the planning processes, about
    0.8 s more (docs/DESIGN.md, "Reading the catalog ahead"). Errors are left to the
    readers that follow."""

    def read() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return
        try:
            while os.read(fd, READ_AHEAD_CHUNK):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)

    thread = threading.Thread(target=read, name="twofold-read-ahead", daemon=True)
    thread.start()
    note_fork_safe(thread)
    return thread
