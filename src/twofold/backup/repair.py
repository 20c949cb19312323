"""`twofold repair`: a new catalog for a set whose catalog is damaged.

The new catalog holds every row SQLite can still read from the damaged one (store/salvage),
then current/ is compared with it: a file whose row was lost gets a row again (its hash
read from the copy), a row whose copy is missing or has the wrong size is closed, so the
next backup copies that file again rather than trusting a copy that is not there. The
damaged file is kept beside the new one, and the repair is recorded as a run of its own.
docs/DESIGN.md, "A damaged catalog", gives the reasons.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import stat
import tempfile
from dataclasses import dataclass, field

from twofold.backup.engine import run_name_for
from twofold.backup.records import to_record
from twofold.core.clock import Clock
from twofold.core.diff import FROM_COPY_INO
from twofold.core.errors import TargetError
from twofold.core.models import Issue, Kind, Record, RunStats
from twofold.core.names import may_stand_in
from twofold.core.paths import show
from twofold.core.progress import Progress
from twofold.fsinfo.disk import fsync_dir
from twofold.fsinfo.scan import entry_from_stat
from twofold.store.catalog import Catalog
from twofold.store.copy import hash_file
from twofold.store.probe import probe
from twofold.store.rows import target_failure
from twofold.store.salvage import check, read_table, tables
from twofold.store.target import SetDir

BATCH = 2000
NOT_SALVAGED = ("format_version",)  # meta keys the new catalog sets itself


@dataclass
class RepairResult:
    """What a repair found and did."""

    problems: list[str]  # SQLite's check of the old catalog; [] when it was whole
    kept: dict[str, int] = field(default_factory=dict)  # table: rows carried over
    gaps: int = 0  # damaged stretches of rows stepped over
    readded: int = 0  # entries of current/ given a row again
    closed: int = 0  # rows whose copy in current/ is missing or of another size
    issues: list[Issue] = field(default_factory=list)  # entries of current/ left without
    # a row: the next backup copies them again
    damaged_copy: str | None = None  # where the damaged catalog is kept
    run_name: str | None = None  # the run that records the repair

    @property
    def intact(self) -> bool:
        """True when the catalog was whole and nothing was changed."""
        return not self.problems


def repair(target: str, set_name: str, clock: Clock, progress: Progress) -> RepairResult:
    """Check set `set_name`'s catalog; when it is damaged, replace it as described above."""
    sd = SetDir(target, set_name)
    if not (os.path.isdir(sd.current) and not sd.exists()):  # a lost catalog: made anew
        sd.require()
    with sd.lock():
        work = tempfile.mkdtemp(prefix="twofold-repair-")
        try:
            return _repair(sd, work, clock, progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _repair(sd: SetDir, work: str, clock: Clock, progress: Progress) -> RepairResult:
    progress.phase("checking the catalog")
    new = os.path.join(work, "catalog.sqlite")
    if not sd.exists():
        result = RepairResult([f"{show(sd.catalog)} is missing"])
        Catalog(new, create=True, set_name=sd.name).close()
    else:
        result = _check_and_salvage(sd, work, new)
        if result.intact:
            return result
    started = clock.now_ns()
    with Catalog(new) as catalog:
        if catalog.profile() is None:  # the probe's answer was lost: ask the drive again
            catalog.set_profile(probe(sd.root))
        sd.namer = catalog.namer()
        runs = catalog.runs()
        result.run_name = run_name_for(started, {r.name for r in runs})
        sources: list[str] = next((r.config["sources"] for r in reversed(runs)
                        if r.config.get("sources")), [])
        run_id = catalog.add_run(result.run_name, started, {
            "sources": sources, "repair": {"gaps": result.gaps, "kept": result.kept}},
            socket.gethostname())
        progress.phase("comparing current/ with the catalog")
        known = _close_missing(sd, catalog, run_id, result)
        _readd(sd, catalog, run_id, known, result, progress)
        stats = RunStats(new=result.readded, deleted=result.closed,
                         skipped=len(result.issues), issues=result.issues,
                         seconds=(clock.now_ns() - started) / 1e9)
        with catalog.transaction():
            catalog.set_run_state(run_id, "complete", clock.now_ns(), stats.as_dict())
    result.damaged_copy = _publish(sd, new, result.run_name)
    progress.finish()
    return result


def _check_and_salvage(sd: SetDir, work: str, new: str) -> RepairResult:
    """Check the catalog; when it is damaged, make `new` of every row it still holds."""
    old = os.path.join(work, "damaged.sqlite")
    try:  # a copy to work on: the file on the drive is only ever replaced whole
        shutil.copyfile(sd.catalog, old)
        if os.path.exists(sd.catalog + b"-journal"):  # SQLite rolls a hot journal back
            shutil.copyfile(sd.catalog + b"-journal", old + "-journal")
    except OSError as err:
        raise _unreadable(err, sd.catalog) from err
    db = sqlite3.connect(old, isolation_level=None)
    try:
        result = RepairResult(check(db))
        if not result.intact:
            Catalog(new, create=True, set_name=sd.name).close()
            _salvage(db, new, result)
        return result
    finally:
        db.close()


def _salvage(db: sqlite3.Connection, new: str, result: RepairResult) -> None:
    """Copy every readable row of the damaged `db` into the fresh catalog `new`."""
    found = tables(db) or {}
    out = sqlite3.connect(new, isolation_level=None)
    try:
        wanted = tables(out)
        assert wanted is not None
        out.execute("BEGIN")
        for table, columns in wanted.items():
            have = [c for c in columns if c in found.get(table, ())]
            if not have:
                result.kept[table] = 0
                continue
            got = read_table(db, table, have)
            rows = got.rows
            if table == "meta":
                rows = [r for r in rows if r[have.index("key")] not in NOT_SALVAGED]
            verb = "INSERT OR REPLACE" if table == "meta" else "INSERT OR IGNORE"
            out.executemany(f"{verb} INTO {table}({', '.join(have)}) "
                            f"VALUES({', '.join('?' * len(have))})", rows)
            result.kept[table] = len(rows)
            result.gaps += len(got.gaps)
        out.execute("COMMIT")
    finally:
        out.close()


def _close_missing(sd: SetDir, catalog: Catalog, run_id: int,
                   result: RepairResult) -> set[bytes]:
    """Close the open file rows whose copy is not in current/ as recorded; return the
    current/ paths the open rows account for."""
    known: set[bytes] = set()
    closes: list[tuple[int, int, bool]] = []
    for row in catalog.current():
        rec = row.record()
        where = sd.cur(rec.path)
        try:
            st = os.lstat(where)
        except FileNotFoundError:
            st = None
        except OSError as err:
            raise _unreadable(err, where) from err
        if rec.kind is Kind.FILE and (st is None or not stat.S_ISREG(st.st_mode)
                                      or st.st_size != rec.size):
            closes.append((rec.id, run_id, False))
        elif st is not None:
            known.add(where)
    with catalog.transaction():
        catalog.close_rows(closes)
    result.closed = len(closes)
    return known


def _readd(sd: SetDir, catalog: Catalog, run_id: int, known: set[bytes],
           result: RepairResult, progress: Progress) -> None:
    """Give a row to each entry of current/ that no open row accounts for."""
    batch: list[Record] = []
    for top, dirs, files in os.walk(sd.current):
        for name in [*dirs, *files]:
            where = os.path.join(top, name)
            if where in known:
                continue
            rel = os.path.relpath(where, sd.current)
            if sd.namer.rel(rel) != rel or any(  # maybe encoded: the original is not known
                    may_stand_in(part, sd.namer.profile) for part in rel.split(b"/")):
                result.issues.append(Issue(rel, "left", "stored under an encoded name; the "
                                           "next backup copies it again"))
                continue
            try:
                st = os.lstat(where)
                entry = entry_from_stat(rel, st, where)
                digest = hash_file(where)[0] if entry.kind is Kind.FILE else None
            except OSError as err:
                result.issues.append(Issue(rel, "skipped", f"cannot be read: {err.strerror}; "
                                           "the next backup copies it again"))
                continue
            if entry.kind not in (Kind.FILE, Kind.DIR, Kind.SYMLINK):
                continue
            rec = to_record(entry, run_id, digest)
            if rec.kind is Kind.FILE:
                rec.ino = FROM_COPY_INO  # the next backup hashes the source to compare
            batch.append(rec)
            progress.advance(int(entry.kind is Kind.FILE), entry.size)
            if len(batch) >= BATCH:
                _insert(catalog, batch, result)
    _insert(catalog, batch, result)


def _insert(catalog: Catalog, batch: list[Record], result: RepairResult) -> None:
    with catalog.transaction():
        catalog.insert(batch)
    result.readded += len(batch)
    batch.clear()


def _publish(sd: SetDir, new: str, run_name: str) -> str | None:
    """Put the new catalog in place of the damaged one, which is kept beside it (its
    name is returned); a kill at any moment leaves the damaged catalog or the new one."""
    aside = sd.root + f"/catalog.damaged-{run_name}.sqlite".encode()
    staged = sd.catalog + b".new"
    journal = sd.catalog + b"-journal"
    kept = sd.exists()
    try:
        if kept:
            _copy_durably(sd.catalog, aside)
        _copy_durably(new.encode(), staged)
        if os.path.exists(journal):  # the old catalog's: must not be applied to the new
            os.replace(journal, aside + b"-journal")
        os.replace(staged, sd.catalog)
        fsync_dir(sd.root)
    except OSError as err:
        raise target_failure(err, sd.catalog) from err
    return show(aside) if kept else None


def _copy_durably(src: bytes, dst: bytes) -> None:
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unreadable(err: OSError, path: bytes) -> TargetError:
    return TargetError(f"reading {show(path)} on the target failed: {err.strerror or err}",
                       "is the drive still connected?")
