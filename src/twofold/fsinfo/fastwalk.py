"""The walk in C (`walk_c/`, built as `_walk`; Linux): the walk of scan.Scanner, reading
the catalog's open rows alongside it and counting the pairs whose signatures are equal
instead of handing them over. What it hands over is exactly what `core.diff.align` would
pair for those paths, so `judge` decides it as it decides the Python walk's pairs.

Why it exists: a no-op run is a walk of the whole source and a read of the whole catalog;
in Python each entry cost about 9 µs (a stat_result, an Entry, a catalog row tuple, a
signature tuple), three times the kernel's 2.7 µs for the lstat itself. Here an unchanged
file costs the lstat, one step of SQLite and a comparison of integers. See docs/DESIGN.md,
"The walk in C". Where the module is not built, `available()` is False and planning uses
scan.Scanner, with the same results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from twofold.core.diff import CatalogRow, Pair, Tally
from twofold.core.models import Kind, Skipped
from twofold.fsinfo.excludes import Excluder, Matcher, nothing
from twofold.fsinfo.scan import MAX_HELD, Source, entry_from_stat, note_link, reason_of

try:
    from twofold.fsinfo import _walk  # type: ignore[attr-defined]
except ImportError:  # not built here: planning walks in Python
    _walk = None

OFF = "TWOFOLD_NO_NATIVE"
"""Set (to anything but empty) to plan in Python even where the walk in C is built."""

RawRow = tuple[Any, ...]


def available() -> bool:
    """True when the walk in C is built here and not switched off."""
    return _walk is not None and not os.environ.get(OFF)


def _stat_ok() -> bool:
    """True when os.stat_result has the 19 fields the C side fills (Linux, CPython
    3.11-3.13) and the walk in C is there."""
    return available() and os.stat_result.n_fields == 19 and \
        os.stat_result.n_sequence_fields == 10


def scan_folder() -> Callable[[bytes, type], Any] | None:
    """The C scan of one folder for file-level images (image/filewalk.scan), or None where
    it cannot be used (see _stat_ok)."""
    return _walk.scan_folder if _stat_ok() else None


def read_small() -> Callable[[list[bytes], int, type], list[Any]] | None:
    """The C read of a batch of small files for file-level images (filewalk.read_files),
    or None where it cannot be used (see _stat_ok)."""
    return _walk.read_small if _stat_ok() else None


def pairs(sources: list[Source], excluder: Excluder, lo: bytes, hi: bytes | None,
          db_file: str, sql: str, row: Callable[[RawRow], CatalogRow], links: bool,
          tally: Tally) -> Iterator[Pair | None]:
    """The pairs of the walk of [lo, hi) with the catalog's rows that `sql` selects
    (SIG_SELECT's columns; ?1 is lo, ?2 hi, each row handed over as `row(tuple)`), those
    with equal signatures left out and counted into `tally`; None now and then, after
    which `tally` is up to date.

    `links`: set `link_to` of a file's later names (only when this is the whole tree,
    as scan.Scanner does with `links=True`).
    """
    assert _walk is not None, "the walk in C is not built"

    tables: dict[bytes, bytes | None] = {}

    def matcher_for(top: bytes) -> tuple[Matcher, bytes | None] | None:
        """None: the C side matches nothing; else the matcher and its prefilter."""
        found = excluder.for_source(top)
        if found is nothing:
            return None
        if top not in tables:
            tables[top] = excluder.first_bytes(top)
        return found, tables[top]

    walk = _walk.Walk([(s.name, s.path) for s in sorted(sources, key=lambda s: s.name)],
                      lo, hi, matcher_for, excluder.enter_source, os.fsencode(db_file),
                      sql.encode(), MAX_HELD)
    first: dict[tuple[int, int], bytes] | None = {} if links else None
    counted = (0, 0, 0)

    def count() -> None:
        nonlocal counted
        now = (walk.same, walk.files, walk.nbytes)
        tally.same += now[0] - counted[0]
        tally.files += now[1] - counted[1]
        tally.nbytes += now[2] - counted[2]
        counted = now

    for item in walk:
        if item is None:
            count()
            yield None
            continue
        code, path, payload, raw = item
        old = None if raw is None else row(raw)
        if code == 2:
            yield None, old
        elif code == 1:
            err, is_dir = payload
            yield Skipped(path, os.strerror(err), bool(is_dir)), old
        else:
            st, abs_path = payload
            try:
                entry = entry_from_stat(path, st, abs_path)
            except OSError as err:  # a symlink's target could not be read
                yield Skipped(path, reason_of(err)), old
                continue
            if first is not None and entry.kind is Kind.FILE and entry.nlink > 1:
                note_link(first, entry)
            yield entry, old
    count()

