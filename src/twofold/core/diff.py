"""Compare a sorted scan with the sorted catalog state, as two streams, into changes.

Both streams are in byte order of the relative path, so one pass decides every entry and
memory stays bounded however large the tree is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, overload

from twofold.core.models import Entry, Kind, Record, Skipped
from twofold.core.paths import is_within


class Action(Enum):
    """What a run must do for one path."""

    NEW = "new"
    CHANGED = "changed"  # content (or type, or symlink target, or hard-link peer) differs
    CHECK = "check"  # size and mtime equal, ctime or inode not: hash decides
    META = "metadata"  # content equal, metadata differs
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"  # unreadable: the catalog record (if any) is carried forward
    CARRIED = "carried"  # in the catalog, inside an unreadable folder: kept as it was
    HELD = "held"  # a file with several names, decided once its first name is known


@dataclass(slots=True)
class Change:
    """One decision of the merge: `entry` from the scan, `old` from the catalog."""

    action: Action
    path: bytes
    entry: Entry | None = None
    old: Record | None = None
    reason: str = ""

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return Change, (self.action, self.path, self.entry, self.old, self.reason)


class CatalogRow(Protocol):
    """A catalog row as the merge reads it: path and signature now, the Record on demand."""

    @property
    def path(self) -> bytes: ...

    @property
    def sig(self) -> tuple[object, ...]: ...

    def record(self) -> Record: ...


FROM_COPY_INO = 0
"""The inode number of a row `twofold repair` made from the copy in current/, not from the
source (no file has inode 0): only its size and hash are the source's, so a file of that
size is hashed (CHECK) rather than copied again whatever its mtime (the copy's may be
rounded to the drive's granularity)."""


def compare(entry: Entry, old: Record) -> Action:
    """Decide what changed between a scanned entry and its catalog record."""
    if entry.kind != old.kind:
        return Action.CHANGED
    if entry.kind is Kind.FILE:
        if entry.size != old.size or (entry.mtime_ns != old.mtime_ns
                                      and old.ino != FROM_COPY_INO):
            return Action.CHANGED
        if entry.link_to != old.link_to:
            return Action.CHANGED
        if entry.ctime_ns != old.ctime_ns or entry.ino != old.ino:
            return Action.CHECK
        if (entry.mode, entry.uid, entry.gid) != (old.mode, old.uid, old.gid):
            return Action.META
        return Action.UNCHANGED
    if entry.kind is Kind.SYMLINK and entry.target != old.target:
        return Action.CHANGED
    if entry.kind in (Kind.CHAR, Kind.BLOCK) and entry.rdev != old.rdev:
        return Action.CHANGED
    same = (entry.mtime_ns, entry.ctime_ns, entry.ino, entry.mode, entry.uid, entry.gid) == (
        old.mtime_ns, old.ctime_ns, old.ino, old.mode, old.uid, old.gid)
    return Action.UNCHANGED if same else Action.META


@dataclass(slots=True)
class Tally:
    """Entries compared (`seen`) and those found unchanged, counted instead of yielded."""

    seen: int = 0
    same: int = 0
    files: int = 0  # unchanged regular files
    nbytes: int = 0  # and their bytes


TALLY_EVERY = 4096  # entries between yields of the running Tally


def decide(entry: Entry, row: CatalogRow | None, keep_old: bool = False) -> Change:
    """The change for a scanned entry and its catalog row (None: not in the catalog).

    An entry whose signature equals its row's is unchanged without building the Record,
    unless `keep_old` asks for it.
    """
    if row is None:
        return Change(Action.NEW, entry.path, entry=entry)
    if entry.signature() == row.sig:
        return Change(Action.UNCHANGED, entry.path, entry,
                      row.record() if keep_old else None)
    old = row.record()
    return Change(compare(entry, old), entry.path, entry=entry, old=old)


Pair = tuple[Entry | Skipped | None, CatalogRow | None]
"""A path's scan item and catalog row, either missing (see align)."""


def align(scan: Iterable[Entry | Skipped], catalog: Iterable[CatalogRow]) -> Iterator[Pair]:
    """Pair two path-sorted streams by path: (item, row), (item, None) or (None, row)."""
    scan_it, cat_it = iter(scan), iter(catalog)
    s = next(scan_it, None)
    c = next(cat_it, None)
    while s is not None or c is not None:
        if c is not None and (s is None or c.path < s.path):
            yield None, c
            c = next(cat_it, None)
        elif c is not None and s is not None and c.path == s.path:
            yield s, c
            c = next(cat_it, None)
            s = next(scan_it, None)
        else:
            yield s, None
            s = next(scan_it, None)


@overload
def merge(scan: Iterable[Entry | Skipped], catalog: Iterable[CatalogRow],
          keep_old: bool = False, hold_links: bool = False,
          tally: None = None) -> Iterator[Change]: ...


@overload
def merge(scan: Iterable[Entry | Skipped], catalog: Iterable[CatalogRow],
          keep_old: bool = False, hold_links: bool = False, *,
          tally: Tally) -> Iterator[Change | Tally]: ...


def merge(scan: Iterable[Entry | Skipped], catalog: Iterable[CatalogRow],
          keep_old: bool = False, hold_links: bool = False,
          tally: Tally | None = None) -> Iterator[Change | Tally]:
    """Merge two path-sorted streams into one change per path (see judge)."""
    return judge(align(scan, catalog), keep_old, hold_links, tally)


def judge(pairs: Iterable[Pair | None], keep_old: bool = False, hold_links: bool = False,
          tally: Tally | None = None) -> Iterator[Change | Tally]:
    """One change for each aligned pair, in their order.

    `hold_links`: a file with several names is not decided but yielded as HELD, with its
    Record as `old`; the caller sets its `link_to` and calls `decide` (see planproc).
    `tally`: unchanged entries are counted there, not yielded, and the Tally itself is
    yielded every TALLY_EVERY entries, so the caller can report progress; a None among
    the pairs (the native walk counted unchanged pairs itself) yields it too.
    """
    skipped_dirs: list[bytes] = []
    unchanged = Action.UNCHANGED  # enum attribute lookups are slow on Python 3.11
    file_kind = Kind.FILE
    for pair in pairs:
        if pair is None:
            if tally is not None:
                yield tally
            continue
        s, c = pair
        if s is None:
            assert c is not None
            if any(is_within(c.path, d) for d in skipped_dirs):
                yield Change(Action.CARRIED, c.path, old=c.record())
            else:
                yield Change(Action.DELETED, c.path, old=c.record())
        elif isinstance(s, Skipped):
            if s.is_dir:
                skipped_dirs.append(s.path)
            yield Change(Action.SKIPPED, s.path, old=c.record() if c else None,
                         reason=s.reason)
        elif hold_links and s.nlink > 1 and s.kind is file_kind:
            yield Change(Action.HELD, s.path, s, c.record() if c else None)
        elif c is None:
            yield Change(Action.NEW, s.path, entry=s)
        elif not keep_old and s.signature() == c.sig:
            if tally is None:
                yield Change(unchanged, s.path, s)
            else:
                tally.same += 1
                if s.kind is file_kind:
                    tally.files += 1
                    tally.nbytes += s.size
                if not tally.same % TALLY_EVERY:
                    yield tally
        else:
            yield decide(s, c, keep_old)
