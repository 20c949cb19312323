"""Catalog rows for what current/ and versions/ hold, where a damaged catalog lost them
(`twofold repair`, backup/repair.py).

A row made from a copy takes its content (BLAKE3), size, times, mode and xattrs from the
copy, and inode 0 (core.diff.FROM_COPY_INO), so the next backup hashes the source rather
than copies it again. When that content came into the set is judged by its mtime: the
first run that finished after the content was written, and never before the end of an
older version of the same path; a versions/<run>/ copy was replaced at that run. A folder
has no content to date: its row reaches back as far as the path's older versions allow.
docs/DESIGN.md, "A damaged catalog", gives the reasons.
"""

from __future__ import annotations

import bisect
import calendar
import os
import stat
import time
from collections.abc import Iterator

from twofold.backup.records import to_record
from twofold.core.diff import FROM_COPY_INO
from twofold.core.errors import TargetError
from twofold.core.models import Issue, Kind, Record
from twofold.core.names import may_stand_in
from twofold.core.paths import show, unsafe
from twofold.core.progress import Progress
from twofold.fsinfo.meta import read_xattrs
from twofold.fsinfo.scan import entry_from_stat
from twofold.sets.catalog import Catalog
from twofold.sets.copy import hash_file
from twofold.sets.target import SetDir

BATCH = 2000


def unreadable(err: OSError, path: bytes) -> TargetError:
    """The error for a failed read on the target."""
    return TargetError(f"reading {show(path)} on the target failed: {err.strerror or err}",
                       "is the drive still connected?")


def recreate_runs(sd: SetDir, catalog: Catalog, host: str) -> None:
    """Runs for the versions/ folders, when every run row was lost (ids in time order).

    A versions/<run>/ folder holds what was there before that run, so a run is made
    before the first of them too: without it, the oldest folder's rows would have no run
    to begin at, and neither `restore --as-of` nor `history` could reach them.
    """
    folders: list[tuple[int, str]] = []
    for folder in sorted(_listdir(sd.versions)):
        name = os.fsdecode(folder)
        try:
            when = calendar.timegm(time.strptime(name[:18], "%Y-%m-%dT%H%M%SZ")) * 10**9
        except ValueError:
            continue
        folders.append((when, name))
    if not folders:
        return
    first = folders[0][0] - 10**9
    earlier = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(first // 10**9))
    runs = [(first, earlier, "the runs before the oldest versions/ folder"),
            *((when, name, "recreated from its versions/ folder") for when, name in folders)]
    for when, name, why in runs:
        rid = catalog.add_run(name, when, {"repair": why}, host)
        with catalog.transaction():
            catalog.set_run_state(rid, "complete", when)


class Rebuild:
    """Puts the rows of `catalog` right against the copies of set `sd`."""

    def __init__(self, sd: SetDir, catalog: Catalog, progress: Progress) -> None:
        self.sd, self.catalog, self.progress = sd, catalog, progress
        self.issues: list[Issue] = []  # entries left without a row, and why
        self._known: set[bytes] = set()  # current/ paths that open rows account for
        runs = sorted((r.finished_ns or r.started_ns, r.id) for r in catalog.runs())
        self._ends = [end for end, _ in runs]
        self._ids = [rid for _, rid in runs]
        self._made: dict[bytes, list[int]] = {}  # path -> until_run of rows made, not
        # yet committed (a batch is inserted at once)

    def close_missing(self, run_id: int) -> int:
        """Close (as of `run_id`) the open file rows whose copy is missing from current/ or
        has another size; the next backup copies those files again. Returns how many."""
        closes: list[tuple[int, int, bool]] = []
        for row in self.catalog.current():
            rec = row.record()
            if unsafe(rec.path) is not None:  # its copy cannot be in current/
                closes.append((rec.id, run_id, False))
                continue
            where = self.sd.cur(rec.path)
            try:
                st = os.lstat(where)
            except FileNotFoundError:
                st = None
            except OSError as err:
                raise unreadable(err, where) from err
            if rec.kind is Kind.FILE and (st is None or not stat.S_ISREG(st.st_mode)
                                          or st.st_size != rec.size):
                closes.append((rec.id, run_id, False))
            elif st is not None:
                self._known.add(where)
        with self.catalog.transaction():
            self.catalog.close_rows(closes)
        return len(closes)

    def readd_current(self, run_id: int) -> int:
        """Give an open row to each entry of current/ that no open row accounts for (after
        close_missing). Returns how many."""
        return self._insert(self._unlisted(self.sd.current, self._known, run_id, False))

    def readd_versions(self) -> int:
        """Give a closed row to each file and symlink of a versions/ folder that no row
        accounts for, so that `restore --as-of` finds it again. Returns how many."""
        names = {r.id: r.name for r in self.catalog.runs()}
        known = {self.sd.ver(names[r.vrun], r.path) for r in self.catalog.closed()
                 if r.vrun is not None and r.vrun in names}
        ids = {name: rid for rid, name in names.items()}

        def rows() -> Iterator[Record]:
            for folder in sorted(_listdir(self.sd.versions)):
                vid = ids.get(os.fsdecode(folder))
                if vid is None:
                    self.issues.append(Issue(b"versions/" + folder, "left", "the run of "
                                             "this versions/ folder is not in the catalog"))
                    continue
                top = os.path.join(self.sd.versions, folder)
                for rec in self._unlisted(top, known, vid, True):
                    if rec.kind is Kind.DIR:  # a folder there only holds what was kept
                        continue
                    if not 1 <= rec.first_run < vid:  # no run before this folder's
                        self.issues.append(Issue(b"versions/" + folder + b"/" + rec.path,
                                                 "left", "no run before this versions/ "
                                                 "folder's is known; copy it by hand"))
                        continue
                    rec.until_run = rec.vrun = vid
                    self._made.setdefault(rec.path, []).append(vid)
                    yield rec

        return self._insert(rows())

    # helpers -------------------------------------------------------------------------

    def _first_run(self, rec: Record, before: int, replaced: bool) -> int:
        """The run from which `rec` (a copy's row) is taken to be valid: at most `before`,
        or below it when `replaced` (a versions/ copy, replaced at run `before`)."""
        last = before - 1 if replaced else before  # a row the repair closed ends at it
        untils = [r.until_run for r in self.catalog.history(rec.path)
                  if r.until_run is not None] + self._made.get(rec.path, [])
        floor = max((u for u in untils if u <= last), default=0)
        first = floor
        if rec.kind is not Kind.DIR:  # the first run that ended after the content's mtime
            at = bisect.bisect_left(self._ends, rec.mtime_ns)
            first = max(floor, self._ids[at] if at < len(self._ids) else before)
        if not replaced:  # never before the first run: no run 0 to restore as of
            return max(min(first, before), self._ids[0] if self._ids else before)
        if first >= before:
            first = max((rid for rid in self._ids if rid < before), default=0)
        return max(first, floor)

    def _unlisted(self, top: bytes, known: set[bytes], before: int,
                  replaced: bool) -> Iterator[Record]:
        """Rows for the entries below `top` (current/ or a versions/ folder) that are not
        in `known`, made from the copies; each valid from its _first_run."""
        sd = self.sd
        for parent, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                where = os.path.join(parent, name)
                if where in known:
                    continue
                shown = where[len(sd.root) + 1:]
                rel = os.path.relpath(where, top)
                if sd.namer.rel(rel) != rel or any(  # maybe encoded: original not known
                        may_stand_in(part, sd.namer.profile) for part in rel.split(b"/")):
                    self.issues.append(Issue(shown, "left", "stored under an encoded name; "
                                             "the next backup copies it again"))
                    continue
                try:
                    entry = entry_from_stat(rel, os.lstat(where), where)
                    digest = hash_file(where)[0] if entry.kind is Kind.FILE else None
                    if sd.namer.profile.xattrs and entry.kind is not Kind.SYMLINK:
                        entry.xattrs = read_xattrs(where) or None
                except OSError as err:
                    self.issues.append(Issue(shown, "skipped",
                                             f"cannot be read: {err.strerror}"))
                    continue
                if entry.kind not in (Kind.FILE, Kind.DIR, Kind.SYMLINK):
                    continue
                rec = to_record(entry, 0, digest)
                rec.first_run = self._first_run(rec, before, replaced)
                if rec.kind is Kind.FILE:
                    rec.ino = FROM_COPY_INO  # the next backup hashes the source to compare
                self.progress.advance(int(entry.kind is Kind.FILE), entry.size)
                yield rec

    def _insert(self, rows: Iterator[Record]) -> int:
        done = 0
        batch: list[Record] = []
        for rec in rows:
            batch.append(rec)
            if len(batch) >= BATCH:
                done += self._commit(batch)
        return done + self._commit(batch)

    def _commit(self, batch: list[Record]) -> int:
        with self.catalog.transaction():
            self.catalog.insert(batch)
        done = len(batch)
        batch.clear()
        return done


def _listdir(path: bytes) -> list[bytes]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise unreadable(err, path) from err
