"""The walk and the reads of file-level imaging (image/filelevel.py): the mounted tree
listed folder by folder ahead of its use (lstat and xattrs, in threads), and files read
whole (small ones, many to one task) or cut at chunk-size cells, read again while they
change."""

from __future__ import annotations

import os
import queue
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from twofold.chunks.chunkstore import ChunkStore
from twofold.fsinfo import fastwalk
from twofold.fsinfo.blockio import thread_buffer

TRIES = 3  # reads of a file that keeps changing before it is listed as inconsistent
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | \
    getattr(os, "O_NOATIME", 0)  # NONBLOCK: a FIFO put in a file's place is not waited on


@dataclass
class Read:
    """One file as read: its fstat after, its cells (large) or its data (small)."""

    st: os.stat_result
    refs: list[list[Any]]  # [id hex or None, offset in chunk, length] (large files)
    small: bytes | None  # the whole data of a small file, packed by the main thread
    unstable: bool


@dataclass
class Tally:
    """Chunks stored, found stored, and all zero (counted by the reading threads)."""

    new_chunks: int = 0
    reused_chunks: int = 0
    zero_chunks: int = 0


class Sink:
    """The chunk store shared by the reading threads (ChunkStore itself is not)."""

    def __init__(self, store: ChunkStore, level: int, tally: Tally) -> None:
        self.store, self.level, self.tally = store, level, tally
        self.lock = threading.Lock()
        self.ids: dict[bytes, int] = {}  # every chunk this file system needs: its length

    def put_joined(self, pieces: list[bytes]) -> bytes | None:
        """put() of `pieces` joined (in the thread that stores them, not the caller's)."""
        return self.put(b"".join(pieces))

    def put(self, data: bytes | memoryview) -> bytes | None:
        """Store `data` as a chunk unless held already; its id (None when all zero)."""
        cid = self.store.id_of(data)
        if self.store.is_zero(cid, data):
            with self.lock:
                self.tally.zero_chunks += 1
            return None
        stored = None if self.store.has(cid) else self.store.stored_form(cid, data, self.level)
        with self.lock:
            self.ids[cid] = len(data)
            if stored is not None and self.store.add(cid, stored, len(data)):
                self.tally.new_chunks += 1
            else:
                self.tally.reused_chunks += 1
        return cid


def same(a: os.stat_result, b: os.stat_result) -> bool:
    """True when inode, size, mtime and ctime are equal."""
    return (a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == \
        (b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def read_file(path: bytes, small: int, chunk_size: int, sink: Sink) -> Read | None:
    """A regular file's data (None when it vanished or is no longer a regular file),
    read again while its size, times or inode change under the read."""
    for attempt in range(TRIES):
        try:
            fd = os.open(path, _OPEN)
        except FileNotFoundError:
            return None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return None
            refs: list[list[Any]] = []
            data: bytes | None = None
            end = before.st_size  # a file that grows meanwhile is read again, not forever
            if end < small:
                data = os.pread(fd, end, 0) if end else b""
                while len(data) < end and (part := os.pread(fd, end - len(data), len(data))):
                    data += part
            else:
                offset = 0
                while offset < end:  # into this thread's buffer: no new memory per cell
                    buf = thread_buffer(min(chunk_size, end - offset))
                    got = os.preadv(fd, [buf], offset)
                    if not got:
                        break
                    cid = sink.put(buf[:got])
                    refs.append([cid.hex() if cid else None, 0, got])
                    offset += got
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if same(before, after) or attempt == TRIES - 1:
            return Read(after, refs, data, not same(before, after))
    raise AssertionError("unreachable")


def read_files(paths: list[bytes], small: int, chunk_size: int, sink: Sink
               ) -> list[Read | None]:
    """read_file of each path, in one task of a pool (a future per file costs more than
    reading a small file from the page cache); small files read in C where it is built
    (the whole batch without the GIL, which each system call took back before)."""
    native = fastwalk.read_small()
    if native is None:
        return read_files_python(paths, small, chunk_size, sink)
    out: list[Read | None] = []
    for path, got in zip(paths, native(paths, small, os.stat_result), strict=True):
        if got is False:  # large (or grown meanwhile): cut into cells
            out.append(read_file(path, small, chunk_size, sink))
        elif got is None:
            out.append(None)
        else:
            data, st, unstable = got
            out.append(Read(st, [], data, unstable))
    return out


def read_files_python(paths: list[bytes], small: int, chunk_size: int, sink: Sink
                      ) -> list[Read | None]:
    """read_files without C (what the tests compare it with)."""
    return [read_file(p, small, chunk_size, sink) for p in paths]


def xattrs(path: bytes) -> dict[str, str]:
    """The extended attributes of `path` (not followed), values in hex, names sorted."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}  # no xattrs on this file system (FAT through FUSE)
    out = {}
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False).hex()
        except OSError:
            continue
    return out


Entry = tuple[bytes, bytes, os.stat_result, dict[str, str], bytes | None]
"""name, path, lstat, xattrs, a symlink's target."""
_NAME = attrgetter("name")


def scan_python(full: bytes) -> list[Entry]:
    """A folder's entries with their lstat, xattrs and symlink targets, by name (those gone
    meanwhile left out)."""
    try:
        with os.scandir(full) as listing:
            found = sorted(listing, key=_NAME)
    except FileNotFoundError:
        return []
    out = []
    for item in found:
        try:
            child = item.path
            st = item.stat(follow_symlinks=False)
            target = os.readlink(child) if stat.S_ISLNK(st.st_mode) else None
            out.append((item.name, child, st, xattrs(child), target))
        except FileNotFoundError:
            continue
    return out


def scan(full: bytes) -> list[Entry]:
    """scan_python's result, from the walk in C where it is built (every system call of
    the folder made without the GIL: a second image is mostly this walk)."""
    native = fastwalk.scan_folder()
    if native is None:
        return scan_python(full)
    try:
        found: list[Entry] = native(full, os.stat_result)
    except FileNotFoundError:
        return []
    return found


class Walk:
    """(relative path, full path, lstat, xattrs, symlink target) of everything under
    `root`, parents first, names sorted; folders on another device (mounts) are listed,
    never entered, except those `graft` names: their tree is read from the folder it gives
    (a snapshot of a btrfs subvolume in place of its stub). The walk starts when made and
    runs ahead of its reader in a thread of its own, folders listed by a few more threads
    (a cold tree waits on the disk: meanwhile the reader can load the previous image)."""

    AHEAD = 512  # folders listed ahead of the reader, at most

    def __init__(self, root: bytes, skip: set[tuple[int, int]],
                 graft: dict[bytes, bytes] | None = None, threads: int = 4) -> None:
        self.queue: queue.Queue[list[Entry] | BaseException | None] = queue.Queue(self.AHEAD)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._crawl, args=(root, skip, graft, threads),
                                       name="twofold-walk", daemon=True)
        self.thread.start()

    def _put(self, item: list[Entry] | BaseException | None) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _crawl(self, root: bytes, skip: set[tuple[int, int]],
               graft: dict[bytes, bytes] | None, threads: int) -> None:
        try:
            top = os.lstat(root)
            if not self._put([(b"", root, top, xattrs(root), None)]):
                return
            with ThreadPoolExecutor(threads, thread_name_prefix="twofold-walk") as pool:
                stack = [(b"", top.st_dev, pool.submit(scan, root))]
                while stack:
                    rel, dev, listing = stack.pop()
                    out: list[Entry] = []
                    below = []
                    for name, seen_path, seen, seen_x, seen_to in listing.result():
                        if (seen.st_dev, seen.st_ino) in skip:
                            continue
                        crel = rel + b"/" + name if rel else name
                        other = graft.get(crel) if graft else None
                        child, st, attrs, target = (other, os.lstat(other), xattrs(other),
                                                    None) \
                            if other else (seen_path, seen, seen_x, seen_to)
                        if other and stat.S_ISLNK(st.st_mode):
                            target = os.readlink(other)
                        out.append((crel, child, st, attrs, target))
                        if stat.S_ISDIR(st.st_mode) and (st.st_dev == dev or other is not None):
                            below.append((crel, st.st_dev, pool.submit(scan, child)))
                    if not self._put(out):
                        for _rel, _dev, fut in [*stack, *below]:
                            fut.cancel()
                        return
                    stack.extend(reversed(below))  # depth first, in name order
        except BaseException as err:  # handed to the reader, raised there
            self._put(err)
        else:
            self._put(None)

    def __iter__(self) -> Iterator[Entry]:
        while (item := self.queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield from item

    def close(self) -> None:
        """Stop the walk (where it is) and wait for its threads."""
        self.stop.set()
        self.thread.join()

    def __enter__(self) -> Walk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
