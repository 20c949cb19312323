"""Plan in worker processes, each comparing one range of paths of the source with the same
range of the catalog, so walking the tree, reading the catalog and comparing the two use
every core.

The catalog's open rows are cut into ranges of about equal size by path, the order both
the scan and the catalog are sorted in. Worker *i* walks only the folders leading into its
range, reads only its range of rows, and writes the changes it finds to its own spool
file; through a pipe it reports how far it got and, at the end, how many entries were
unchanged. The parent reads the spools in range order, so it sees every change in path
order, exactly as one merge of the whole tree would give them.

A file with several names (hard links) is not decided in a worker, as its first name may
lie in another range: the worker passes it on as HELD and the parent, which sees all of
them in path order, sets its `link_to` and decides.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import IO

from twofold.core.diff import Action, Change, Pair, Tally, align, decide, judge
from twofold.fsinfo import fastwalk
from twofold.fsinfo.children import can_fork, child_context, die_with_parent
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Scanner, Source
from twofold.sets.catalog import Catalog, open_rows, read_only
from twofold.sets.rows import SigRow, catalog_error, sig_query

MIN_ROWS = 10_000  # catalog rows per worker below which another worker is not worth it
MAX_PARTS = 4
BATCH = 1000  # changes per pickle in a spool


@dataclass(frozen=True, slots=True)
class Range:
    """The paths one worker plans: lo <= path < hi (no upper end when hi is None)."""

    lo: bytes = b""
    hi: bytes | None = None


def ranges(catalog: Catalog | None, parts: int | None = None,
           sources: list[Source] | None = None) -> list[Range]:
    """The ranges to plan in: two per core (a cold walk waits on the disk, and more walks
    keep more reads in flight), at most MAX_PARTS, each with about MIN_ROWS rows or more
    (estimated from a sample of the catalog's rows, which also gives the cuts).

    A first run (no rows to cut at) is cut where a sample of the sources' own folders is
    (`folder_sample`), when the sources hold more folders than it lists."""
    if catalog is None or not can_fork():
        return [Range()]
    rows, sample = catalog.sample_open()  # cut where a sample of the rows is cut evenly
    most = min(2 * (os.cpu_count() or 1), MAX_PARTS)
    if parts is None:
        parts = max(1, min(most, rows // MIN_ROWS))
        if rows == 0 and sources:  # a first run: no rows to cut at
            sample = folder_sample(sources)
            parts = most if sample else 1
    return _cut(sample, parts)


def _cut(sample: list[bytes], parts: int) -> list[Range]:
    """`parts` ranges cut where the sorted `sample` is cut evenly (fewer when it repeats)."""
    cuts: list[bytes] = []
    for i in range(1, parts):
        cut = sample[len(sample) * i // parts] if sample else None
        if cut is not None and (not cuts or cut > cuts[-1]) and cut > b"":
            cuts.append(cut)
    bounds: list[bytes | None] = [b"", *cuts, None]
    return [Range(bounds[i] or b"", bounds[i + 1]) for i in range(len(bounds) - 1)]


LIST_MAX = 64
"""Folders folder_sample lists at most: a tree with more is cut into ranges on a first run."""


def folder_sample(sources: list[Source]) -> list[bytes]:
    """The sorted paths (as the plan names them) of the folders found by listing the
    sources breadth-first, LIST_MAX folders at most; empty when that listed them all (a
    tree this small is planned as one range). A subtree with more folders near the top
    gets more of the sample, and so a range of its own. Measured on the 100,000-file
    bench tree, empty catalog, cold: the plan took 1.06 s in four ranges against 1.9 s
    in one."""
    found: list[bytes] = []
    todo = deque((s.name, s.path) for s in sources)
    listed = 0
    while todo and listed < LIST_MAX:
        rel, path = todo.popleft()
        listed += 1
        try:
            with os.scandir(path) as it:
                subs = [d for d in it if d.is_dir(follow_symlinks=False)]
        except OSError:
            continue  # the walk says what is wrong with it
        for d in subs:
            child = rel + b"/" + os.fsencode(d.name)
            found.append(child)
            todo.append((child, os.fsencode(d.path)))
    return sorted(found) if todo else []


def plan_range(sources: list[Source], excluder: Excluder, db_file: str | None, part: Range,
               links: bool) -> Iterator[Change | Tally]:
    """The changes in one range, with Tallies of progress (`seen` only) on the way and a
    Tally of the unchanged entries (`seen` 0) at the end.

    `links`: decide files with several names here (only when this is the whole tree).
    The walk in C (fsinfo/fastwalk) pairs the walk with the catalog where it is built and
    there is a catalog; else scan.Scanner and core.diff.align do, with the same result.
    """
    db = read_only(db_file) if db_file is not None else None
    try:
        tally = Tally()
        paired: Iterable[Pair | None]
        if db is not None and db_file is not None and fastwalk.available():
            conn = db
            paired = fastwalk.pairs(sources, excluder, part.lo, part.hi, db_file,
                                    sig_query(part.hi is not None),
                                    lambda raw: SigRow(raw, conn), links, tally)
        else:
            rows = open_rows(db, part.lo, part.hi, slim=True) if db is not None else iter(())
            paired = align(Scanner(sources, excluder, part.lo, part.hi, links=links), rows)
        changes = reported = 0
        for ch in judge(paired, hold_links=not links, tally=tally):
            if type(ch) is Tally:
                seen = tally.same + changes
                yield Tally(seen - reported)
                reported = seen
                continue
            assert isinstance(ch, Change)
            if ch.path < part.lo:  # an unreadable folder above the range: carries rows only
                continue
            changes += 1
            yield ch
        yield Tally(tally.same + changes - reported)
        yield Tally(0, tally.same, tally.files, tally.nbytes)
    except sqlite3.DatabaseError as err:  # either walk's, reading the catalog
        assert db_file is not None
        raise catalog_error(err, db_file) from err
    finally:
        if db is not None:
            db.close()


def _spooled(items: Iterator[Change | Tally], out: IO[bytes]) -> Iterator[Tally]:
    """Write the changes and the final Tally to `out` in batches; yield progress Tallies."""
    batch: list[Change | Tally] = []
    for item in items:
        if type(item) is Tally and item.seen:  # progress; the last one has the counts
            yield item
            continue
        batch.append(item)
        if len(batch) >= BATCH:
            pickle.dump(batch, out, pickle.HIGHEST_PROTOCOL)
            batch = []
    pickle.dump(batch, out, pickle.HIGHEST_PROTOCOL)


def _worker(conn: Connection, spool: str, sources: list[Source], patterns: list[str],
            defaults: bool, db_file: str | None, part: Range, links: bool,
            main: int) -> None:
    die_with_parent(main)
    try:
        with open(spool, "wb") as out:
            for tally in _spooled(plan_range(sources, Excluder(patterns, defaults), db_file,
                                             part, links), out):
                conn.send_bytes(pickle.dumps(tally.seen))
        conn.send_bytes(b"")
    except BaseException as err:  # handed to the parent, which raises it
        conn.send_bytes(b"E" + pickle.dumps(err))
    finally:
        conn.close()


def _read_spool(path: str) -> Iterator[Change | Tally]:
    with open(path, "rb") as f:
        while True:
            try:
                batch = pickle.load(f)
            except EOFError:
                return
            yield from batch


class _Links:
    """Decides HELD files in path order: the first name of a hard-linked file seen keeps
    the content, the later names link to it."""

    def __init__(self) -> None:
        self.first: dict[tuple[int, int], bytes] = {}

    def decide(self, ch: Change) -> Change:
        e = ch.entry
        assert e is not None
        first = self.first.setdefault((e.dev, e.ino), e.path)
        if first != e.path:
            e.link_to = first
        return decide(e, ch.old)


class Planned:
    """The changes between the sources and the catalog, planned in worker processes where
    possible and kept in their spool files, so that applying them reads them again rather
    than holding them in memory or copying them to another spool.

    Iterate once for every change in path order, with Tallies of progress and of unchanged
    entries; `replay()` then gives the changes again; `close()` drops the spools.
    """

    def __init__(self, sources: list[Source], patterns: list[str], defaults: bool,
                 catalog: Catalog | None, parts: int | None = None) -> None:
        # A bad pattern is reported here, before anything is forked.
        self._excluder = Excluder(patterns, defaults)
        self._args = (sources, patterns, defaults, catalog.file if catalog else None)
        self._parts = ranges(catalog, parts, sources)
        self._tmp = tempfile.TemporaryDirectory(prefix="twofold-plan-")
        self._spools = [os.path.join(self._tmp.name, str(i)) for i in range(len(self._parts))]

    def __iter__(self) -> Iterator[Change | Tally]:
        if can_fork():
            yield from self._run_workers()
        else:  # in this process, as one range
            sources, _, _, db_file = self._args
            with open(self._spools[0], "wb") as out:
                yield from _spooled(plan_range(sources, self._excluder, db_file,
                                               self._parts[0], True), out)
        yield from self._read(with_tallies=True)

    def replay(self) -> Iterator[Change]:
        """The changes once more, as the first pass gave them."""
        for item in self._read(with_tallies=False):
            assert type(item) is Change
            yield item

    def close(self) -> None:
        """Drop the spool files."""
        self._tmp.cleanup()

    def _read(self, with_tallies: bool) -> Iterator[Change | Tally]:
        links = _Links()
        for spool in self._spools:
            for item in _read_spool(spool):
                if isinstance(item, Tally):
                    if with_tallies:
                        yield item
                elif item.action is Action.HELD:
                    yield links.decide(item)
                else:
                    yield item

    def _run_workers(self) -> Iterator[Tally]:
        sources, patterns, defaults, db_file = self._args
        ctx = child_context()
        procs, conns = [], []
        try:
            for spool, part in zip(self._spools, self._parts, strict=True):
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, daemon=True, args=(
                    child, spool, sources, patterns, defaults, db_file, part,
                    len(self._parts) == 1, os.getpid()))
                proc.start()
                child.close()
                procs.append(proc)
                conns.append(parent)
            yield from _progress(conns)
        finally:
            for conn in conns:
                conn.close()
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
                proc.join()


def _progress(conns: list[Connection]) -> Iterator[Tally]:
    """Tallies of progress until every worker is done; a worker's error is raised."""
    running = list(conns)
    while running:
        for conn in wait(running):
            assert isinstance(conn, Connection)
            try:
                data = conn.recv_bytes()
            except EOFError:
                raise RuntimeError("a planning process ended without a word") from None
            if not data:
                running.remove(conn)
            elif data[:1] == b"E":
                raise pickle.loads(data[1:])
            else:
                yield Tally(pickle.loads(data))
