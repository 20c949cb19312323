"""Copy one file while hashing it with BLAKE3, keeping holes of sparse files as holes; a
file none of which is in the page cache is read past it (O_DIRECT) where the OS allows,
and the copy of a large dense file is written past it (all but its last partial block)
on kernel file systems that allow it."""

from __future__ import annotations

import errno
import mmap
import os
import stat
import threading
from dataclasses import dataclass, field

import blake3

from twofold.core.models import Entry
from twofold.core.names import Holds
from twofold.fsinfo.blockio import (
    DIRECT_ALIGN,
    DIRECT_WRITE_MIN,
    private_buffer,
    set_direct,
    write_direct,
)
from twofold.fsinfo.disk import none_cached, on_fuse
from twofold.fsinfo.meta import ALL, apply_metadata, read_xattrs

BUF = 1 << 20
_ZEROS = bytes(BUF)
_HAS_SEEK_DATA = hasattr(os, "SEEK_DATA") and hasattr(os, "SEEK_HOLE")
_HAS_READV = hasattr(os, "readv")
_NO_HOLES = {errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS}
_local = threading.local()
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class SourceReadError(OSError):
    """Reading the source failed (as opposed to writing the target)."""


@dataclass(slots=True)
class Copied:
    """Result of a copy: content hash, bytes, and the source's stat before and after."""

    hash: bytes
    size: int
    before: os.stat_result
    after: os.stat_result
    problems: list[str] = field(default_factory=list)  # metadata that could not be set

    @property
    def stable(self) -> bool:
        """True when the source did not change while it was read."""
        a, b = self.before, self.after
        return (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns,
                                                              b.st_ctime_ns)


def _hash_zeros(h: blake3.blake3, n: int) -> None:
    while n > 0:
        step = min(n, BUF)
        h.update(_ZEROS[:step] if step < BUF else _ZEROS)
        n -= step


def _segments(fd: int, size: int) -> list[tuple[int, int]]:
    """Data segments (offset, length) of a file, using SEEK_DATA/SEEK_HOLE."""
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # only a hole remains
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        out.append((start, min(end, size) - start))
        pos = end
    return out


class _Source:
    """An open source file read into a page-aligned buffer; past the page cache while
    `direct` (until a read the OS refuses or a short one: then through the cache)."""

    __slots__ = ("direct", "ended", "fd")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.direct = False
        self.ended = False  # a direct read came up short: a next read, if any, goes
        # through the cache (O_DIRECT is turned off only then: most files end in that read)
        if _O_DIRECT and _HAS_READV and size and none_cached(fd):
            self._set_direct(True)

    def _set_direct(self, on: bool) -> None:
        changed = set_direct(self.fd, on)  # refused: through the cache
        self.direct = on and changed
        self.ended = False

    def read_full(self, view: memoryview, want: int) -> int:
        """Fill view[:want] from the file's position; fewer bytes only at its end."""
        got = 0
        if self.ended:
            self._set_direct(False)
        while got < want:
            if self.direct:  # whole aligned blocks; a read past `want` is left unused
                ask = min(len(view), -(-want // DIRECT_ALIGN) * DIRECT_ALIGN)
                try:
                    n = os.readv(self.fd, [view[got:ask]])
                except OSError:  # refused (EINVAL, or a driver's own error): the same
                    self._set_direct(False)  # read through the cache, which says
                    continue                 # whether the file is really unreadable
                if n < ask - got:  # the end (or a driver's short read): no more direct
                    if n < want - got:
                        self._set_direct(False)
                    else:  # all that was asked for: off before a next read, if any
                        self.ended = True
                n = min(n, want - got)
            elif _HAS_READV:
                n = os.readv(self.fd, [view[got:want]])
            else:  # Windows: no readv
                data = os.read(self.fd, want - got)
                n = len(data)
                view[got:got + n] = data
            if n == 0:
                break
            got += n
        return got


class _Target:
    """The new copy, written from the buffer; past the page cache while `direct` (a
    large file written from its start, on a kernel file system that allows it), through
    it from the first piece that is not whole blocks, or that the OS refuses."""

    __slots__ = ("direct", "fd")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.direct = False
        if _O_DIRECT and size >= DIRECT_WRITE_MIN and not on_fuse(fd):
            self.direct = set_direct(fd, True)

    def close(self) -> None:
        """Leave the descriptor as it came (a caller's open file shares its flags)."""
        if self.direct:
            self.direct = not set_direct(self.fd, False)

    def write(self, data: memoryview) -> None:
        """Append all of `data` (a slice of the page-aligned buffer from its start)."""
        if self.direct:
            if len(data) % DIRECT_ALIGN == 0:
                data = data[write_direct(self.fd, data):]
            if data:  # the file's last piece, or refused midway: through the cache
                self.direct = not set_direct(self.fd, False)
        _write_all(self.fd, data)


def _pump(src: _Source, dst: _Target | None, h: blake3.blake3, length: int,
          buf: mmap.mmap) -> int:
    """Copy up to `length` bytes from src's position to dst's, hashing them."""
    view = memoryview(buf)
    done = 0
    while done < length:
        try:
            n = src.read_full(view, min(BUF, length - done))
        except OSError as err:
            raise SourceReadError(err.errno, err.strerror) from err
        if n == 0:
            break
        chunk = view[:n]
        h.update(chunk)
        if dst is not None:
            dst.write(chunk)
        done += n
    return done


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _stream(src: int, dst: int | None, st: os.stat_result) -> tuple[bytes, int]:
    """Hash (and copy when dst is given) an open file; holes stay holes in dst."""
    h = blake3.blake3(max_threads=blake3.blake3.AUTO) if st.st_size > 64 * BUF else \
        blake3.blake3()
    buf: mmap.mmap | None = getattr(_local, "buf", None)
    if buf is None:  # one page-aligned buffer per thread: zeroing 1 MiB per small file
        buf = _local.buf = private_buffer(BUF)  # costs more than copying it
    size = st.st_size
    source = _Source(src, size)
    sparse = _HAS_SEEK_DATA and st.st_blocks * 512 < size
    target = None if dst is None else _Target(dst, 0 if sparse else size)  # holes: cached
    try:
        if not sparse:  # growth while reading shows in the stat taken after the copy
            total = _pump(source, target, h, size, buf)
            return h.digest(), total
        pos = 0
        for start, length in _segments(src, size):
            _hash_zeros(h, start - pos)
            os.lseek(src, start, os.SEEK_SET)
            if dst is not None:
                _hole(dst, pos, start)
            pos = start + _pump(source, target, h, length, buf)
        _hash_zeros(h, size - pos)
        if dst is not None:
            _hole(dst, pos, size)
        return h.digest(), size
    finally:
        if target is not None:
            target.close()


def _hole(dst: int, end: int, start: int) -> None:
    """Extend dst, whose data ends at `end`, with a hole up to `start`; where the drive
    cannot make holes (fusefat refuses to grow a file but by writing), write zeros."""
    if start <= end:
        return
    try:
        os.ftruncate(dst, start)
    except OSError as err:
        if err.errno not in _NO_HOLES:
            raise
        os.lseek(dst, end, os.SEEK_SET)
        while end < start:
            step = min(BUF, start - end)
            _write_all(dst, memoryview(_ZEROS)[:step])
            end += step
    os.lseek(dst, start, os.SEEK_SET)


def open_source(path: bytes) -> tuple[int, os.stat_result]:
    """Open a regular file for reading without following a symlink put in its place."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_BINARY | _O_NOFOLLOW)
    except OSError as err:
        raise SourceReadError(err.errno, err.strerror, path) from err
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SourceReadError(errno.EINVAL, "no longer a regular file", path)
    return fd, st


def copy_file(src_path: bytes, dst_path: bytes | tuple[int, bytes] | int, *,
              fsync: bool = False, meta: Entry | None = None, holds: Holds = ALL) -> Copied:
    """Copy src to a new file dst (which must not exist), hashing the content.

    `dst_path` may be (folder descriptor, name): the file is then made in that opened
    folder (fsinfo.beneath); or an open, empty file, which stays open. With `meta`, the
    source's xattrs are read into it and its metadata is given to the copy through the
    open descriptor (no further path lookups).
    """
    src, before = open_source(src_path)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY
        if isinstance(dst_path, int):
            dst = os.dup(dst_path)
        elif isinstance(dst_path, tuple):
            dst = os.open(dst_path[1], flags | _O_NOFOLLOW, 0o600, dir_fd=dst_path[0])
        else:
            dst = os.open(dst_path, flags, 0o600)
        try:
            digest, size = _stream(src, dst, before)
            problems: list[str] = []
            if meta is not None:
                try:
                    meta.xattrs = read_xattrs(src)
                except OSError as err:
                    raise SourceReadError(err.errno, err.strerror, src_path) from err
                problems = apply_metadata(dst, meta, holds=holds)
            if fsync:
                os.fsync(dst)
        finally:
            os.close(dst)
        after = os.fstat(src)
    finally:
        os.close(src)
    return Copied(digest, size, before, after, problems)


def hash_file(path: bytes) -> tuple[bytes, int]:
    """BLAKE3 and length of a file's content."""
    fd, st = open_source(path)
    try:
        return _stream(fd, None, st)
    finally:
        os.close(fd)
