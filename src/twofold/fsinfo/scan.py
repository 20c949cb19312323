"""Walk the sources of a backup set and yield entries in byte order of their relative path.

A directory's own entry sorts at `name`, its contents at `name/`; ordering siblings by
`name` for files and `name/` for the contents of directories makes a depth-first walk
produce exactly the byte order the catalog is sorted in, so the two can be merged as
streams.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from twofold.core.models import Entry, Kind, Skipped
from twofold.core.paths import join
from twofold.fsinfo.excludes import Excluder

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


def entry_from_stat(rel: bytes, st: os.stat_result, abs_path: bytes | None = None) -> Entry:
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


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


class Scanner:
    """Yields the entries of all sources, sorted, applying excludes and noting hard links."""

    def __init__(self, sources: list[Source], excluder: Excluder) -> None:
        self.sources = sorted(sources, key=lambda s: s.name)
        self.excluder = excluder
        self._links: dict[tuple[int, int], bytes] = {}

    def __iter__(self) -> Iterator[Entry | Skipped]:
        tops: list[tuple[bytes, bytes, Source]] = [(s.name, s.path, s) for s in self.sources]
        yield from self._walk_listing(b"", [(n, p, True) for n, p, _ in tops],
                                      {s.name: s for _, _, s in tops})

    def _walk_listing(self, rel_dir: bytes, items: list[tuple[bytes, bytes, bool]],
                      tops: dict[bytes, Source] | None = None) -> Iterator[Entry | Skipped]:
        """Walk (name, absolute path, is_dir) items of one folder in catalog order."""
        keyed: list[tuple[bytes, bool, bytes, bytes]] = []
        for name, abs_path, is_dir in items:
            keyed.append((name, False, name, abs_path))
            if is_dir:
                keyed.append((name + b"/", True, name, abs_path))
        keyed.sort(key=lambda k: k[0])
        listings: dict[bytes, list[tuple[bytes, bytes, bool]]] = {}
        for _key, is_subtree, name, abs_path in keyed:
            rel = join(rel_dir, name)
            if is_subtree:
                listing = listings.pop(name, None)
                if listing is not None:
                    yield from self._walk_listing(rel, listing)
                continue
            source = tops.get(name) if tops is not None else None
            yield from self._visit(rel, abs_path, listings, name, source)

    def _visit(self, rel: bytes, abs_path: bytes,
               listings: dict[bytes, list[tuple[bytes, bytes, bool]]], name: bytes,
               source: Source | None) -> Iterator[Entry | Skipped]:
        try:
            st = os.lstat(abs_path)
        except FileNotFoundError:
            return  # vanished since the folder was listed
        except OSError as err:
            yield Skipped(rel, _reason(err))
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if source is None and self.excluder.excluded(rel, is_dir):
            return
        if is_dir:
            try:
                with os.scandir(abs_path) as it:
                    listing = [(d.name, d.path, d.is_dir(follow_symlinks=False)) for d in it]
            except OSError as err:
                yield Skipped(rel, _reason(err), is_dir=True)
                return
            if source is not None:
                self.excluder.enter_source(name, abs_path)
            listings[name] = listing
            yield entry_from_stat(rel, st)
            return
        try:
            entry = entry_from_stat(rel, st, abs_path)
        except OSError as err:
            yield Skipped(rel, _reason(err))
            return
        if entry.kind is Kind.FILE and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._links.setdefault(key, rel)
            if first != rel:
                entry.link_to = first
        yield entry
