"""`twofold repair`: a new catalog for a set whose catalog is damaged.

The new catalog holds every row SQLite can still read from the damaged one (sets/salvage),
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
import tempfile
from dataclasses import dataclass, field

from twofold.backup.engine import run_name_for
from twofold.backup.rebuild import Rebuild, recreate_runs, unreadable
from twofold.core.clock import Clock
from twofold.core.models import Issue, RunStats
from twofold.core.paths import show
from twofold.core.progress import Progress
from twofold.fsinfo.disk import copy_durably, fsync_dir
from twofold.sets.catalog import Catalog
from twofold.sets.probe import probe
from twofold.sets.rows import target_failure
from twofold.sets.salvage import check, read_table, tables
from twofold.sets.target import SetDir

NOT_SALVAGED = ("format_version",)  # meta keys the new catalog sets itself


@dataclass
class RepairResult:
    """What a repair found and did."""

    problems: list[str]  # SQLite's check of the old catalog; [] when it was whole
    kept: dict[str, int] = field(default_factory=dict)  # table: rows carried over
    gaps: int = 0  # damaged stretches of rows stepped over
    readded: int = 0  # entries of current/ given a row again
    versions: int = 0  # entries of versions/ folders given a (closed) row again
    closed: int = 0  # rows whose copy in current/ is missing or of another size
    issues: list[Issue] = field(default_factory=list)  # entries left without a row
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
        host = socket.gethostname()
        if not catalog.runs():
            recreate_runs(sd, catalog, host)
        runs = catalog.runs()
        result.run_name = run_name_for(started, {r.name for r in runs})
        sources: list[str] = next((r.config["sources"] for r in reversed(runs)
                        if r.config.get("sources")), [])
        run_id = catalog.add_run(result.run_name, started, {
            "sources": sources, "repair": {"gaps": result.gaps, "kept": result.kept}}, host)
        progress.phase("comparing current/ and versions/ with the catalog")
        rows = Rebuild(sd, catalog, progress)
        result.closed = rows.close_missing(run_id)
        result.versions = rows.readd_versions()  # first: current/'s rows date after them
        result.readded = rows.readd_current(run_id)
        result.issues = rows.issues
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
        raise unreadable(err, sd.catalog) from err
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


def _publish(sd: SetDir, new: str, run_name: str) -> str | None:
    """Put the new catalog in place of the damaged one, which is kept beside it (its
    name is returned); a kill at any moment leaves the damaged catalog or the new one."""
    aside = sd.root + f"/catalog.damaged-{run_name}.sqlite".encode()
    staged = sd.catalog + b".new"
    journal = sd.catalog + b"-journal"
    kept = sd.exists()
    try:
        if kept:
            copy_durably(sd.catalog, aside)
        copy_durably(new, staged)
        if os.path.exists(journal):  # the old catalog's: must not be applied to the new
            os.replace(journal, aside + b"-journal")
        os.replace(staged, sd.catalog)
        fsync_dir(sd.root)
    except OSError as err:
        raise target_failure(err, sd.catalog) from err
    return show(aside) if kept else None

