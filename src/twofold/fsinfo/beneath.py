"""Files made and opened beneath an opened folder, never through a symlink or `..`.

A restore writes where a catalog (read from a drive someone may have handed over) says;
a symlink planted in the destination, or a row that names one and then a file below it,
must not carry a write outside the folder. Every folder on the way is opened with
O_NOFOLLOW|O_DIRECTORY relative to the one before (Linux's openat2 with RESOLVE_BENEATH
and RESOLVE_NO_SYMLINKS does the whole walk in one call where the kernel has it), and the
last name is then used relative to that folder's descriptor. docs/DESIGN.md, "Paths from
a drive", gives the reasons.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import sys
from contextlib import suppress

from twofold.core.paths import unsafe
from twofold.fsinfo.disk import _libc

_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "arm64": 437, "riscv64": 437}.get(
    platform.machine())
_ESCAPES = (errno.ELOOP, errno.ENOTDIR, errno.EXDEV)
"""What the kernel says when a walk meets a symlink (O_NOFOLLOW, RESOLVE_NO_SYMLINKS), a
file where a folder should be, or a way out of the folder (RESOLVE_BENEATH)."""


class OpenHow(ctypes.Structure):
    """struct open_how of openat2(2)."""

    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


class Escape(OSError):
    """A path that would leave the folder: through `..`, a symlink, or a file in the way."""


def _openat2(dir_fd: int, rel: bytes) -> int | None:
    """The folder `rel` below `dir_fd`, opened by openat2 without following a symlink;
    None where the kernel (or this machine's C library) lacks openat2."""
    libc = _libc()
    if libc is None or _SYS_OPENAT2 is None or not use_openat2:
        return None
    how = OpenHow(_O_DIR, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    fd = libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(rel),
                      ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd >= 0:
        return int(fd)
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM):  # an old kernel, or a seccomp filter refusing it
        return None
    raise OSError(err, os.strerror(err), os.fsdecode(rel))


use_openat2 = sys.platform.startswith("linux")
"""Tests turn this off to run the component-by-component walk."""


class Beneath:
    """An opened folder; paths below it are reached one folder descriptor at a time."""

    def __init__(self, root: bytes) -> None:
        self.root = root
        self.fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        self._last: tuple[bytes, int] | None = None  # the last parent opened, kept open

    def close(self) -> None:
        """Close the folder and the parent kept open."""
        self._forget()
        os.close(self.fd)

    def __enter__(self) -> Beneath:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _forget(self) -> None:
        if self._last is not None:
            os.close(self._last[1])
            self._last = None

    def folder(self, rel: bytes, *, create: bool = False, mode: int = 0o755) -> int:
        """A descriptor of folder `rel` (b"" the root), made (with missing parents) when
        `create`; owned by this object, valid until the next call. Raises Escape when a
        symlink or a file is in the way, FileNotFoundError when missing."""
        if not rel:
            return self.fd
        if self._last is not None and self._last[0] == rel:
            return self._last[1]
        why = unsafe(rel)
        if why is not None:
            raise Escape(errno.EPERM, why, os.fsdecode(rel))
        fd = self._open(rel, create, mode)
        self._forget()
        self._last = (rel, fd)
        return fd

    def own(self, rel: bytes) -> int:
        """A descriptor of the existing folder `rel` that the caller closes (the folder
        kept open by folder() stays open)."""
        if not rel or (self._last is not None and self._last[0] == rel):
            return os.dup(self.folder(rel))
        why = unsafe(rel)
        if why is not None:
            raise Escape(errno.EPERM, why, os.fsdecode(rel))
        return self._open(rel, False, 0)

    def parent(self, rel: bytes, *, create: bool = False) -> tuple[int, bytes]:
        """(descriptor of the folder holding `rel`, last name of `rel`)."""
        why = unsafe(rel)
        if why is not None:
            raise Escape(errno.EPERM, why, os.fsdecode(rel))
        head, _, name = rel.rpartition(b"/")
        return self.folder(head, create=create), name

    def _open(self, rel: bytes, create: bool, mode: int) -> int:
        try:
            fd = _openat2(self.fd, rel)
        except OSError as err:
            if err.errno in _ESCAPES:
                raise Escape(err.errno, "a symlink or a file is in the way, not followed",
                             os.fsdecode(rel)) from None
            if err.errno != errno.ENOENT or not create:
                raise
            fd = None
        if fd is not None:
            return fd
        return self._walk(rel, create, mode)

    def _walk(self, rel: bytes, create: bool, mode: int) -> int:
        """Open `rel` one component at a time, each with O_NOFOLLOW."""
        fd = os.dup(self.fd)
        try:
            for name in rel.split(b"/"):
                try:
                    nxt = os.open(name, _O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with suppress(FileExistsError):  # made meanwhile, or a dangling
                        os.mkdir(name, mode, dir_fd=fd)  # symlink (the open says so)
                    nxt = self._step(fd, name, rel)
                except OSError as err:
                    if err.errno in _ESCAPES:
                        raise Escape(err.errno, "a symlink or a file is in the way, not "
                                     "followed", os.fsdecode(rel)) from None
                    raise
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _step(fd: int, name: bytes, rel: bytes) -> int:
        try:
            return os.open(name, _O_DIR, dir_fd=fd)
        except OSError as err:
            if err.errno in _ESCAPES:
                raise Escape(err.errno, "a symlink or a file is in the way, not followed",
                             os.fsdecode(rel)) from None
            raise

    def lstat(self, rel: bytes) -> os.stat_result | None:
        """lstat of `rel`, None when it (or a folder on the way) is missing."""
        try:
            fd, name = self.parent(rel)
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def is_dir(self, rel: bytes) -> bool:
        """True when `rel` is a folder (not a symlink to one)."""
        st = self.lstat(rel)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def at(self, rel: bytes) -> bytes:
        """A path naming `rel`, for calls that take no dir_fd (setxattr); use it only
        with calls that do not follow the last name. On Linux it goes through
        /proc/self/fd and the folder descriptor opened by the walk, so no symlink on the
        way is followed; elsewhere it is the joined path."""
        fd, name = self.parent(rel)
        if _PROC_FD:
            return b"/proc/self/fd/%d/%s" % (fd, name)
        return os.path.join(self.root, rel)


_PROC_FD = os.path.isdir("/proc/self/fd")
