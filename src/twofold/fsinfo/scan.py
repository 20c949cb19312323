"""Walk the sources of a backup set and yield entries in byte order of their relative path.

A directory's own entry sorts at `name`, its contents at `name/`; ordering siblings by
`name` for files and `name/` for the contents of directories makes a depth-first walk
produce exactly the byte order the catalog is sorted in, so the two can be merged as
streams.

walk_c/scan.c is this walk in C (see fastwalk.py); it follows Scanner step for step, so a
change here is a change there too (tests/unit/test_fastwalk.py compares the two).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from twofold.core.models import Entry, Kind, Skipped
from twofold.fsinfo.excludes import Excluder, Matcher

_KINDS = {
    stat.S_IFREG: Kind.FILE, stat.S_IFDIR: Kind.DIR, stat.S_IFLNK: Kind.SYMLINK,
    stat.S_IFIFO: Kind.FIFO, stat.S_IFSOCK: Kind.SOCKET, stat.S_IFCHR: Kind.CHAR,
    stat.S_IFBLK: Kind.BLOCK,
}


@dataclass(frozen=True, slots=True)
class Source:
    """One source folder of a set: its top-level name in the set and its absolute path."""

    name: bytes
    path: bytes


_FILE = Kind.FILE  # enum attribute lookups are slow on Python 3.11: hoisted


class StatLike(Protocol):
    """What entry_from_stat reads: an os.stat_result, or the walk in C's stat_result."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_dev(self) -> int: ...
    @property
    def st_nlink(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...
    @property
    def st_ctime_ns(self) -> int: ...
    @property
    def st_rdev(self) -> int: ...


def entry_from_stat(rel: bytes, st: StatLike, abs_path: bytes | None = None) -> Entry:
    """Build an Entry from an lstat result (reads the link target of a symlink).

    Owner and group names are left out: they are looked up only for catalog rows.
    """
    kind = _KINDS.get(stat.S_IFMT(st.st_mode), _FILE)
    if kind is _FILE:
        return Entry(rel, kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                     st.st_dev, st.st_nlink, st.st_mode & 0o7777, st.st_uid, st.st_gid)
    target = os.readlink(abs_path) if kind is Kind.SYMLINK and abs_path is not None else None
    return Entry(
        path=rel, kind=kind, size=st.st_size if kind is Kind.SYMLINK else 0,
        mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, ino=st.st_ino, dev=st.st_dev,
        nlink=st.st_nlink, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
        target=target, rdev=st.st_rdev if kind in (Kind.CHAR, Kind.BLOCK) else 0,
    )


def note_link(first: dict[tuple[int, int], bytes], entry: Entry) -> None:
    """Set `link_to` of a file with several names when an earlier name was seen."""
    name = first.setdefault((entry.dev, entry.ino), entry.path)
    if name != entry.path:
        entry.link_to = name


def _first(item: tuple[bytes, bool, bytes, bytes | None, bool]) -> bytes:
    return item[0]


def reason_of(err: OSError) -> str:
    """How a skipped entry's error is reported."""
    return err.strerror or str(err)


class Scanner:
    """Yields the entries of all sources, sorted, applying excludes and noting hard links.

    With `lo` and `hi`, only entries whose path lies in [lo, hi) are yielded, and only the
    folders leading to that range are walked (planning in several processes). Hard links
    are then left to the caller (`links=False`): their first name may be in another range.
    """

    def __init__(self, sources: list[Source], excluder: Excluder, lo: bytes = b"",
                 hi: bytes | None = None, links: bool = True) -> None:
        self.sources = sorted(sources, key=lambda s: s.name)
        self.excluder = excluder
        self.lo, self.hi, self.links = lo, hi, links
        self._links: dict[tuple[int, int], bytes] = {}

    def _touches(self, prefix: bytes) -> bool:
        """True when some path starting with `prefix` lies in [lo, hi)."""
        return (self.hi is None or prefix < self.hi) and (
            self.lo <= prefix or self.lo.startswith(prefix))

    def _holds(self, prefix: bytes) -> bool:
        """True when every path starting with `prefix` lies in [lo, hi)."""
        if not self.lo and self.hi is None:
            return True
        return self.lo <= prefix and (
            self.hi is None or (prefix < self.hi and not self.hi.startswith(prefix)))

    def __iter__(self) -> Iterator[Entry | Skipped]:
        """Walk depth-first with an explicit stack: one generator frame, however deep.

        Each folder being walked holds a descriptor, and its entries are looked at
        relative to it (`fstatat`), so the kernel resolves one name per entry rather
        than its whole path (walking the bench tree took about 30 % less time)."""
        tops = {s.name: s for s in self.sources}
        top: list[Item] = [(s.name, s.path, True) for s in self.sources]
        stack = [self._level(b"", top, _Dir(None, b""))]
        lo, hi, links = self.lo, self.hi, self._links if self.links else None
        lstat, s_isdir, s_isreg = os.lstat, stat.S_ISDIR, stat.S_ISREG
        file_kind = _FILE
        try:
            while stack:
                prefix, keyed, listings, whole, excluded, cut, here = stack[-1]
                fd = here.fd
                for is_subtree, name, abs_path, is_dir in keyed:
                    rel = prefix + name
                    if is_subtree:
                        pending = listings.pop(name, None)
                        if pending is not None:
                            stack.append(self._level(rel + b"/", pending[0], pending[1]))
                            break
                        continue
                    emit = whole or (lo <= rel and (hi is None or rel < hi))
                    if not emit and not (is_dir and self._touches(rel + b"/")):
                        continue
                    try:
                        if fd is not None:
                            st = lstat(name, dir_fd=fd)
                        else:
                            st = lstat(abs_path or here.path + b"/" + name)
                    except FileNotFoundError:
                        continue  # vanished since the folder was listed
                    except OSError as err:
                        yield Skipped(rel, reason_of(err))
                        continue
                    mode = st.st_mode
                    if s_isreg(mode):  # the common case, kept lean
                        if not emit or excluded(rel[cut:], name):
                            continue
                        entry = Entry(rel, file_kind, st.st_size, st.st_mtime_ns,
                                      st.st_ctime_ns, st.st_ino, st.st_dev, st.st_nlink,
                                      mode & 0o7777, st.st_uid, st.st_gid)
                        if links is not None and st.st_nlink > 1:
                            note_link(links, entry)
                        yield entry
                        continue
                    source = tops.get(name) if not prefix else None
                    path = abs_path or here.path + b"/" + name
                    if s_isdir(mode):
                        if source is None and excluded(rel[cut:] + b"/", name + b"/"):
                            continue
                        try:
                            listing, sub = _list(name, path, fd)
                        except OSError as err:  # yielded even outside the range: see class
                            yield Skipped(rel, reason_of(err), is_dir=True)
                            continue
                        if source is not None:
                            self.excluder.enter_source(name, path)
                        if emit or self._touches(rel + b"/"):
                            listings[name] = (listing, sub)
                        else:
                            sub.close()
                        if emit:
                            yield entry_from_stat(rel, st)
                        continue
                    if not emit or (source is None and excluded(rel[cut:], name)):
                        continue
                    try:
                        yield entry_from_stat(rel, st, path)
                    except OSError as err:
                        yield Skipped(rel, reason_of(err))
                else:
                    stack.pop()
                    here.close()
                    for _listing, sub in listings.values():
                        sub.close()
        finally:  # the consumer stopped early, or an error: close what is still open
            for level in stack:
                level[6].close()
                for _listing, sub in level[2].values():
                    sub.close()

    def _level(self, prefix: bytes, items: list[Item], here: _Dir) -> Level:
        """One folder being walked: its path prefix, its (is_subtree, name, absolute path
        or None, is_dir) items in catalog order (a folder's own name sorts at `name`, its
        contents at `name/`), the listings of its subfolders, whether all of it is in
        range, the exclude matcher of its source, where the path inside that source
        starts, and the folder itself."""
        keyed: list[tuple[bytes, bool, bytes, bytes | None, bool]] = []
        for name, abs_path, is_dir in items:
            keyed.append((name, False, name, abs_path, is_dir))
            if is_dir:
                keyed.append((name + b"/", True, name, abs_path, is_dir))
        keyed.sort(key=_first)
        top = prefix.partition(b"/")[0]
        # asked after enter_source, which reads the source's own file
        return (prefix, iter([k[1:] for k in keyed]), {}, self._holds(prefix),
                self.excluder.for_source(top), len(top) + 1, here)


class _Dir:
    """A folder being walked: its absolute path and, where one was opened, a descriptor
    its entries are looked up relative to (None: by path)."""

    __slots__ = ("fd", "path")
    held = 0  # descriptors open in all walks of this process

    def __init__(self, fd: int | None, path: bytes) -> None:
        self.fd, self.path = fd, path
        if fd is not None:
            _Dir.held += 1

    def close(self) -> None:
        """Close the descriptor (once)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            _Dir.held -= 1


_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_BY_FD = os.stat in os.supports_dir_fd and os.scandir in os.supports_fd  # lstat: stat
MAX_HELD = 64
"""Folders held open at once; deeper ones (and the rest of a walk that found no free
descriptor) go by path."""


def _list(name: bytes, path: bytes, parent_fd: int | None) -> tuple[list[Item], _Dir]:
    """The (name, None, is_dir) items of a folder, and the folder opened for its walk.

    By descriptor where the platform allows it and fewer than MAX_HELD are open; by path
    otherwise, or when this process has run out of descriptors."""
    fd = None
    if _BY_FD and _Dir.held < MAX_HELD:
        try:
            fd = os.open(name, _OPEN_DIR, dir_fd=parent_fd) if parent_fd is not None \
                else os.open(path, _OPEN_DIR)
        except OSError as err:
            if err.errno not in (errno.EMFILE, errno.ENFILE):
                raise
    here = _Dir(fd, path)
    try:
        with os.scandir(fd if fd is not None else path) as it:
            listing: list[Item] = [(d.name if isinstance(d.name, bytes) else os.fsencode(d.name),
                                    None, d.is_dir(follow_symlinks=False)) for d in it]
    except BaseException:
        here.close()
        raise
    return listing, here


Item = tuple[bytes, bytes | None, bool]
"""A folder's entry as listed: its name, its absolute path (top level only), whether it is
a folder."""
Level = tuple[bytes, Iterator[tuple[bool, bytes, bytes | None, bool]],
              dict[bytes, tuple[list[Item], _Dir]], bool, Matcher, int, _Dir]
