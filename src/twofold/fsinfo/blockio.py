"""Positional byte readers over files, block devices and windows of them (partitions), reads
of pieces into a per-thread buffer past the page cache (O_DIRECT) where allowed, and
durable writes of new files that go past it too."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat
import struct
import threading
from types import TracebackType
from typing import Protocol

from twofold.core.errors import TwofoldError
from twofold.fsinfo.disk import on_fuse

_BLKSSZGET = 0x1268  # Linux ioctl: logical sector size of a block device

DIRECT_ALIGN = 4096
"""Offsets, lengths and buffers aligned to this are read past the page cache (O_DIRECT:
any logical sector size up to 4096 allows it)."""


class LayoutError(TwofoldError):
    """A partition table or file system structure is damaged, truncated or not understood."""


class Reader(Protocol):
    """Anything that reads `length` bytes at `offset`; fewer bytes only at the end."""

    def pread(self, offset: int, length: int) -> bytes:
        """Return up to `length` bytes starting at `offset`."""
        ...


def read_exact(reader: Reader, offset: int, length: int, what: str = "data") -> bytes:
    """Read exactly `length` bytes at `offset`, or raise LayoutError naming `what`."""
    if offset < 0 or length < 0:
        raise LayoutError(f"{what}: negative offset or length ({offset}, {length})")
    data = reader.pread(offset, length)
    if len(data) != length:
        raise LayoutError(
            f"{what}: wanted {length} bytes at offset {offset}, got {len(data)}",
            "the image or device is shorter than its own structures say",
        )
    return data


class FileReader:
    """A Reader over a path or an open file descriptor (a regular file or a block device)."""

    def __init__(self, source: str | os.PathLike[str] | int) -> None:
        if isinstance(source, int):
            self.fd = source
            self._owned = False
        else:
            self.fd = os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._owned = True
        self.size = os.lseek(self.fd, 0, os.SEEK_END)
        self.sector_size = _logical_sector_size(self.fd)
        self._direct: int | None = None  # an O_DIRECT descriptor of the same file
        self._direct_state = 0  # 0: not tried yet, 1: open, -1: not possible here
        self._direct_lock = threading.Lock()

    def pread(self, offset: int, length: int) -> bytes:
        """Read up to `length` bytes at `offset`, looping over short reads."""
        parts: list[bytes] = []
        done = 0
        while done < length:
            chunk = os.pread(self.fd, length - done, offset + done)
            if not chunk:
                break
            parts.append(chunk)
            done += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def read_into(self, buf: memoryview, offset: int, aligned: bool = True) -> int:
        """Fill `buf` with the bytes at `offset`; the count read (fewer only at the end).

        No copy passes through Python. When `buf` starts on a page (`aligned`: the caller's
        word, as for a slice at a multiple of DIRECT_ALIGN into an mmap) and offset and
        length are multiples of DIRECT_ALIGN, the read bypasses the page cache: one
        request per read instead of the cache's readahead pieces, and imaging a disk
        does not push the system's own files out of memory. Elsewhere (a file system
        that refuses O_DIRECT, an unaligned piece, the end of the device) it reads
        through the cache."""
        length, done = len(buf), 0
        if aligned and not (offset | length) % DIRECT_ALIGN:
            fd = self._direct_fd()
            if fd is not None:
                try:
                    done = os.preadv(fd, [buf], offset)
                except OSError as err:
                    if err.errno != errno.EINVAL:
                        raise
                    self._direct_state = -1  # this file refuses it after all
        while done < length:
            got = os.preadv(self.fd, [buf[done:]], offset + done)
            if not got:
                break
            done += got
        return done

    def _direct_fd(self) -> int | None:
        if self._direct_state == 0:
            with self._direct_lock:
                if self._direct_state == 0:
                    try:
                        self._direct = os.open(f"/proc/self/fd/{self.fd}",
                                               os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
                        self._direct_state = 1
                    except OSError:
                        self._direct_state = -1
        return self._direct if self._direct_state == 1 else None

    def close(self) -> None:
        """Close the descriptor if this reader opened it (and the O_DIRECT one)."""
        if self._direct is not None:
            os.close(self._direct)
            self._direct, self._direct_state = None, -1
        if self._owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> FileReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_buffers = threading.local()


def thread_buffer(size: int) -> memoryview:
    """A page-aligned buffer of `size` bytes owned by the calling thread (kept for its next
    call: the bytes read last are overwritten then). FileReader.read_into reads into it
    past the page cache; hashing and compressing take it as it is, with no copy."""
    buf: memoryview | None = getattr(_buffers, "buf", None)
    if buf is None or len(buf) < size:
        buf = _buffers.buf = memoryview(private_buffer(max(size, 1)))
    return buf[:size]


def private_buffer(size: int) -> mmap.mmap:
    """Page-aligned memory of `size` bytes, private to this process: a process forked
    later gets a copy of it, not the same pages (an anonymous mmap is shared by default,
    and two processes filling one buffer would mix their bytes)."""
    if hasattr(mmap, "MAP_PRIVATE"):
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    return mmap.mmap(-1, size)  # Windows: not inherited by child processes


DIRECT_WRITE_MIN = 1 << 20
"""Files of this size or more are written past the page cache by write_durably."""

_write_buffers = threading.local()


def write_durably(path: str, data: bytes | memoryview) -> None:
    """Write `data` as the file `path` (made, or emptied) and flush it to the device.

    From DIRECT_WRITE_MIN bytes, the whole 4 KiB blocks go past the page cache (O_DIRECT,
    from a page-aligned buffer the calling thread keeps) and the last partial block through
    it: the caller flushes anyway, so it waits no longer, and the kernel neither copies
    the bytes into cache pages nor copies them again at writeback (an image's packs are
    written once and not read back soon). A file system that refuses O_DIRECT, or a
    direct write it refuses midway, gets the rest through the cache, and so does a FUSE
    file system."""
    view = memoryview(data).cast("B")
    whole = len(view) - len(view) % DIRECT_ALIGN if len(view) >= DIRECT_WRITE_MIN else 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        done = _write_direct(fd, view[:whole]) if whole else 0
        while done < len(view):
            done += os.write(fd, view[done:])
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_direct(fd: int, view: memoryview) -> int:
    """Write `view` (whole blocks) at the file's start past the page cache, as far as the
    file system allows; the bytes written. Leaves the descriptor buffered again."""
    if on_fuse(fd):
        return 0  # fusefat runs out of clusters for a buffered tail after direct writes
    if not set_direct(fd, True):
        return 0  # this file system has no direct I/O
    buf: memoryview | None = getattr(_write_buffers, "buf", None)
    if buf is None or len(buf) < len(view):
        buf = _write_buffers.buf = memoryview(private_buffer(len(view)))
    buf[:len(view)] = view
    done = write_direct(fd, buf[:len(view)])
    set_direct(fd, False)
    return done


def set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for `fd`; False where the OS has no O_DIRECT or the file
    system refuses the change."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | flag if on else flags & ~flag)
    except OSError:
        return False
    return True


def write_direct(fd: int, view: memoryview) -> int:
    """Write `view` (whole blocks of a page-aligned buffer) at the position of `fd`, which
    is O_DIRECT, as far as the file system takes it: the bytes written, fewer than asked
    when it refuses (EINVAL) midway. Any other error is raised."""
    done = 0
    try:
        while done < len(view):
            done += os.write(fd, view[done:])
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
    return done


class PieceReadError(Exception):
    """A piece could not be read whole: `offset` where; `cause` the OSError, or None when
    the file ended first."""

    def __init__(self, offset: int, cause: OSError | None) -> None:
        super().__init__(offset, cause)
        self.offset, self.cause = offset, cause


def read_pieces(reader: FileReader, start: int, pieces: list[tuple[int, int]]) -> memoryview:
    """The bytes of `pieces` ((offset from `start`, length)) back to back, in the calling
    thread's buffer (thread_buffer: valid until its next use), past the page cache where
    possible; PieceReadError when one cannot be read whole."""
    buf = thread_buffer(sum(n for _, n in pieces))
    pos = 0
    for offset, length in pieces:
        try:
            got = reader.read_into(buf[pos:pos + length], start + offset,
                                   aligned=not pos % DIRECT_ALIGN)
        except OSError as err:
            raise PieceReadError(start + offset, err) from err
        if got != length:
            raise PieceReadError(start + offset, None)
        pos += length
    return buf


def _logical_sector_size(fd: int) -> int | None:
    """A block device's logical sector size; None for regular files or when unknown."""
    if not stat.S_ISBLK(os.fstat(fd).st_mode):
        return None
    try:
        raw = fcntl.ioctl(fd, _BLKSSZGET, b"\0\0\0\0")
    except OSError:
        return None
    size: int = struct.unpack("i", raw)[0]
    return size if size in (512, 1024, 2048, 4096) else None


class SliceReader:
    """A Reader over the window [start, start + size) of another Reader (a partition)."""

    def __init__(self, base: Reader, start: int, size: int) -> None:
        if start < 0 or size < 0:
            raise ValueError("slice start and size must not be negative")
        self.base = base
        self.start = start
        self.size = size

    def pread(self, offset: int, length: int) -> bytes:
        """Read up to `length` bytes at `offset` inside the window, never past its end."""
        if offset >= self.size or length <= 0:
            return b""
        length = min(length, self.size - offset)
        return self.base.pread(self.start + offset, length)


class BytesReader:
    """A Reader over bytes in memory (tests and small structures)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def pread(self, offset: int, length: int) -> bytes:
        """Return the slice [offset, offset + length) of the bytes."""
        return self.data[offset : offset + length]


def reader_size(reader: Reader) -> int | None:
    """The size in bytes a Reader reports through a `size` attribute, if it has one."""
    size = getattr(reader, "size", None)
    return size if isinstance(size, int) else None
