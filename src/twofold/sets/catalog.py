"""The catalog of a backup set: an SQLite file on the target recording runs and entries.

Each entry row is one version of one path, valid from run `first_run` until `until_run`
(open rows, with `until_run` NULL, describe current/). The schema is in schema.py and
docs/FORMAT.md.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any

from twofold.core.errors import CatalogError
from twofold.core.models import Record
from twofold.core.names import Namer, TargetProfile
from twofold.sets.mirror import Mirror
from twofold.sets.rows import (
    COLS,
    DAMAGED_HINT,
    SELECT,
    SIG_SELECT,
    DamagedRow,
    PendingOp,
    Row,
    Run,
    SigRow,
    catalog_error,
    encode_xattrs,
    row_record,
    target_failure,
    to_run,
)
from twofold.sets.schema import FORMAT_VERSION, SCHEMA

__all__ = ["Catalog", "PendingOp", "Run", "open_rows", "read_only"]

PAGE = 2000


def open_rows(db: sqlite3.Connection, lo: bytes = b"", hi: bytes | None = None,
              before_run: int | None = None, slim: bool = False) -> Iterator[Row | SigRow]:
    """The open rows with `lo` <= path < `hi`, in path order, a page at a time.

    `slim`: read only what the comparison with a scan needs (SigRow), about half the time.
    """
    last, after = lo, ">="  # the first page starts at `lo`, the next ones after its end
    upper = "" if hi is None else "AND path < ? "
    select = SIG_SELECT if slim else SELECT
    path_at = 1
    while True:
        # A plain range on path lets SQLite seek in the index to each page's start; an
        # OR in that condition made it scan from the beginning every page (O(n²)).
        args: tuple[object, ...] = (last, *(() if hi is None else (hi,)),
                                    before_run if before_run is not None else 1 << 62, PAGE)
        rows = db.execute(
            f"{select} WHERE until_run IS NULL AND path {after} ? {upper}"
            "AND first_run < ? ORDER BY path LIMIT ?", args).fetchall()
        if not rows:
            return
        if slim:
            for row in rows:
                yield SigRow(row, db)
        else:
            for row in rows:
                yield Row(row)
        last, after = rows[-1][path_at], ">"


def read_only(path: str) -> sqlite3.Connection:
    """A read-only connection to a catalog file, for a process that only plans."""
    uri = "file:" + urllib.parse.quote(path) + "?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None)


class Catalog:
    """Open (or create) the catalog file of one backup set."""

    def __init__(self, path: str, *, create: bool = False, set_name: str = "",
                 whole_files: bool = False) -> None:
        """`whole_files`: the drive's driver cannot rewrite a file in place (see mirror.py)."""
        self.path = path
        self._mirror: Mirror | None = None
        try:
            if whole_files:
                try:
                    self._mirror = Mirror(path)
                except OSError as err:
                    raise CatalogError(f"cannot copy the catalog {path}: {err.strerror}",
                                       "is the drive still connected?") from err
            self.db = sqlite3.connect(self._mirror.local if self._mirror else path,
                                      isolation_level=None, check_same_thread=False)
            # A rollback journal, not WAL: WAL needs shared memory, which FUSE and network
            # drives do not reliably provide. PERSIST: the journal file stays (its header
            # zeroed after each commit), so a run that records only itself changes no
            # folder on the drive; see docs/DESIGN.md.
            self.db.execute("PRAGMA journal_mode=PERSIST")
            self.db.execute("PRAGMA synchronous=FULL")
            if create:
                self.db.executescript(SCHEMA)
                old = self.meta("format_version")
                if old is None or int(old) < FORMAT_VERSION:  # 1 -> 2 added the names table
                    with self.transaction():
                        self.set_meta("format_version", str(FORMAT_VERSION))
                        if old is None:
                            self.set_meta("set", set_name)
            version = self.meta("format_version")
        except sqlite3.DatabaseError as err:
            self._close_quietly()
            raise catalog_error(err, path) from err
        except UnicodeDecodeError as err:  # a damaged schema: its text is not UTF-8
            self._close_quietly()
            raise catalog_error(DamagedRow(f"text that is not UTF-8 ({err})"), path) from err
        if version is None or not version.isdigit():
            self._close_quietly()
            raise CatalogError(f"{path} is not a twofold catalog (or its format version "
                               "is damaged)", DAMAGED_HINT)
        if int(version) > FORMAT_VERSION:
            raise CatalogError(f"the catalog {path} has format {version}, newer than this "
                               f"twofold understands ({FORMAT_VERSION})",
                               "upgrade twofold to read it")

    def _close_quietly(self) -> None:
        with suppress(Exception):
            self.close()

    def close(self) -> None:
        """Close the database."""
        self.db.close()
        if self._mirror is not None:
            self._mirror.drop()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Close; an SQLite error from inside the block becomes catalog_error's, which
        names this catalog and what to do."""
        self.close()
        if isinstance(err, UnicodeDecodeError):  # text SQLite hands over that is not UTF-8
            raise catalog_error(DamagedRow(f"text that is not UTF-8 ({err})"),
                                self.path) from err
        if isinstance(err, sqlite3.DatabaseError):
            raise catalog_error(err, self.path) from err

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic, durable change; SQLite's errors become twofold's (catalog_error)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")
                if self._mirror is not None:
                    self._publish()
            except BaseException:
                if self.db.in_transaction:
                    with suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as err:
            raise catalog_error(err, self.path) from err

    def _publish(self) -> None:
        assert self._mirror is not None
        try:
            self._mirror.publish()
        except OSError as err:
            raise target_failure(err, self.path) from err

    def meta(self, key: str) -> str | None:
        """A value from the meta table."""
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value in the meta table (inside a transaction)."""
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    # the target drive ------------------------------------------------------------------

    def profile(self) -> TargetProfile | None:
        """What the target can hold, as probed when the set was made (None: not probed)."""
        text = self.meta("target")
        try:
            return None if text is None else TargetProfile.from_json(text)
        except (ValueError, TypeError, KeyError) as err:
            raise catalog_error(DamagedRow(f"the drive's profile ({err})"), self.path) \
                from err

    def set_profile(self, profile: TargetProfile) -> None:
        """Record the target's profile."""
        with self.transaction():
            self.set_meta("target", profile.to_json())

    def namer(self) -> Namer:
        """The names this set's files have on the target."""
        try:
            twins = {bytes(p): bytes(n) for p, n in self.db.execute(
                "SELECT path, stored FROM names")}
        except sqlite3.OperationalError:  # a catalog made before names were encoded
            twins = {}
        except sqlite3.DatabaseError as err:
            raise catalog_error(err, self.path) from err
        return Namer(self.profile(), twins)

    def add_moves(self, run_id: int, moves: Iterable[tuple[bytes, bytes]]) -> None:
        """Record files run `run_id` renamed, (old path, new path) (inside a transaction)."""
        self.db.executemany("INSERT OR REPLACE INTO moves(run, old, new) VALUES(?, ?, ?)",
                            [(run_id, old, new) for old, new in moves])

    def moved_row(self, rec: Record) -> Record | None:
        """The row that took over the content of `rec` when its run renamed the file."""
        if rec.until_run is None:
            return None
        try:
            row = self.db.execute(
                f"{SELECT} WHERE first_run=? AND path=(SELECT new FROM moves WHERE run=? "
                "AND old=?)", (rec.until_run, rec.until_run, rec.path)).fetchone()
        except sqlite3.OperationalError:  # a catalog from before moves were recorded
            return None
        return None if row is None else row_record(row)

    def add_names(self, names: Iterable[tuple[bytes, bytes]]) -> None:
        """Record (path, stored last component) for case twins (inside a transaction)."""
        self.db.executemany("INSERT OR REPLACE INTO names(path, stored) VALUES(?, ?)",
                            list(names))

    # runs ------------------------------------------------------------------------------

    def add_run(self, name: str, started_ns: int, config: dict[str, Any], host: str) -> int:
        """Record a new run in state 'running'; returns its id."""
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO runs(name, started_ns, state, config, host) VALUES(?,?,?,?,?)",
                (name, started_ns, "running", json.dumps(config), host))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def set_run_state(self, run_id: int, state: str, finished_ns: int | None = None,
                      stats: dict[str, Any] | None = None) -> None:
        """Change a run's state (inside a transaction)."""
        self.db.execute(
            "UPDATE runs SET state=?, finished_ns=COALESCE(?, finished_ns), "
            "stats=COALESCE(?, stats) WHERE id=?",
            (state, finished_ns, None if stats is None else json.dumps(stats), run_id))

    def runs(self) -> list[Run]:
        """All runs, oldest first."""
        return [to_run(r) for r in self.db.execute(
            "SELECT id, name, started_ns, finished_ns, state, config, host, stats "
            "FROM runs ORDER BY id")]

    def run_names(self) -> dict[int, str]:
        """Run id to versions/ folder name."""
        return dict(self.db.execute("SELECT id, name FROM runs"))

    # entries -----------------------------------------------------------------------------

    def current(self, before_run: int | None = None) -> Iterator[Row | SigRow]:
        """Open rows in path order, read page by page so memory stays bounded."""
        return open_rows(self.db, before_run=before_run)

    @property
    def file(self) -> str:
        """The SQLite file this catalog works on (a local copy for a mirrored catalog)."""
        return self._mirror.local if self._mirror is not None else self.path

    def count_open(self) -> int:
        """How many entries current/ holds, folders included."""
        return int(self.db.execute(
            "SELECT COUNT(*) FROM entries WHERE until_run IS NULL").fetchone()[0])

    def sample_open(self, n: int = 256) -> tuple[int, list[bytes]]:
        """An estimate of how many open rows there are, and the paths, sorted, of those
        among up to `n` rows picked evenly by row id: a look-up each, where counting or
        cutting the open rows by offset reads the whole index (30-50 ms at 100k rows)."""
        top = int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM entries").fetchone()[0])
        if top == 0:
            return 0, []
        ids = sorted({1 + k * top // n for k in range(n)})
        marks = ",".join("?" * len(ids))
        paths = sorted(bytes(r[0]) for r in self.db.execute(
            f"SELECT path FROM entries WHERE until_run IS NULL AND id IN ({marks})", ids))
        return len(paths) * top // len(ids), paths

    def valid_at(self, run_id: int) -> Iterator[Record]:
        """Rows describing the tree as run `run_id` left it, in path order."""
        cur = self.db.execute(
            f"{SELECT} WHERE first_run <= ? AND (until_run IS NULL OR until_run > ?) "
            "ORDER BY path", (run_id, run_id))
        for row in cur:
            yield row_record(row)

    def link_targets(self, run_id: int) -> set[bytes]:
        """Paths that other files of run `run_id` are hard links to."""
        return {bytes(r[0]) for r in self.db.execute(
            "SELECT DISTINCT link_to FROM entries WHERE link_to IS NOT NULL AND first_run <= ? "
            "AND (until_run IS NULL OR until_run > ?)", (run_id, run_id))}

    def changed_by(self, run_id: int) -> set[bytes]:
        """Paths a run added, changed or removed."""
        return {bytes(r[0]) for r in self.db.execute(
            "SELECT path FROM entries WHERE first_run=? OR until_run=?", (run_id, run_id))}

    def open_row(self, path: bytes) -> Record | None:
        """The open row of `path`, if any."""
        row = self.db.execute(f"{SELECT} WHERE until_run IS NULL AND path=?",
                              (path,)).fetchone()
        return None if row is None else row_record(row)

    def history(self, path: bytes) -> list[Record]:
        """Every kept version of `path`, oldest first."""
        return [row_record(r) for r in self.db.execute(
            f"{SELECT} WHERE path=? ORDER BY first_run", (path,))]

    def stored(self) -> Iterator[Record]:
        """Rows of regular files whose content is on the target (current/ or versions/)."""
        cur = self.db.execute(
            f"{SELECT} WHERE kind='f' AND link_to IS NULL AND "
            "(until_run IS NULL OR vrun IS NOT NULL) ORDER BY path, first_run")
        for row in cur:
            yield row_record(row)

    def closed(self) -> Iterator[Record]:
        """Rows that no longer describe current/."""
        for row in self.db.execute(f"{SELECT} WHERE until_run IS NOT NULL ORDER BY id"):
            yield row_record(row)

    def versions_bytes(self) -> int:
        """Bytes of the old versions kept in versions/ (what prune can free)."""
        row = self.db.execute("SELECT COALESCE(SUM(size), 0) FROM entries WHERE kind='f' "
                              "AND link_to IS NULL AND vrun IS NOT NULL").fetchone()
        return int(row[0])

    def count_current_files(self) -> int:
        """How many non-folder entries current/ holds."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM entries WHERE until_run IS NULL AND kind != 'd'").fetchone()
        return int(row[0])

    def insert(self, records: Iterable[Record]) -> None:
        """Add rows (inside a transaction)."""
        self.db.executemany(
            f"INSERT INTO entries({COLS}) VALUES({','.join('?' * 19)})",
            [(r.path, r.kind.value, r.size, r.mtime_ns, r.ctime_ns, r.ino, r.mode, r.uid, r.gid,
              r.owner, r.group, encode_xattrs(r.xattrs), r.target, r.rdev, r.link_to, r.hash,
              r.first_run, r.until_run, r.vrun) for r in records])

    def close_rows(self, closes: Iterable[tuple[int, int, bool]]) -> None:
        """Close rows: (row id, run, content moved to that run's versions/ folder).

        When the content moves, rows of the same path closed earlier without a move (their
        content was the one just moved) move with it.
        """
        for row_id, run, moved in closes:
            self.db.execute("UPDATE entries SET until_run=?, vrun=? WHERE id=?",
                            (run, run if moved else None, row_id))
            if moved:
                self.db.execute(
                    "UPDATE entries SET vrun=? WHERE vrun IS NULL AND until_run IS NOT NULL "
                    "AND kind='f' AND path=(SELECT path FROM entries WHERE id=?)",
                    (run, row_id))

    def delete_rows(self, ids: Iterable[int]) -> None:
        """Forget rows (prune)."""
        self.db.executemany("DELETE FROM entries WHERE id=?", [(i,) for i in ids])

    # pending operations ------------------------------------------------------------------

    def add_pending(self, run_id: int, ops: Iterable[PendingOp]) -> None:
        """Record operations about to be applied to current/ (inside a transaction)."""
        self.db.executemany(
            "INSERT INTO pending(run, seq, op, path, tmp, link_to) VALUES(?,?,?,?,?,?)",
            [(run_id, o.seq, o.op, o.path, o.tmp, o.link_to) for o in ops])

    def pending(self) -> list[tuple[int, PendingOp]]:
        """Operations of interrupted runs that may still need doing, in order (folder
        removals last, deepest first)."""
        return [(r[0], PendingOp(r[1], r[2], bytes(r[3]), r[4],
                                 None if r[5] is None else bytes(r[5])))
                for r in self.db.execute(
                    "SELECT run, seq, op, path, tmp, link_to FROM pending "
                    "ORDER BY op = 'rmdir', run, CASE op WHEN 'rmdir' THEN -length(path) "
                    "ELSE seq END")]

    def clear_pending(self, run_id: int, upto_seq: int | None = None) -> None:
        """Forget operations known to be durable (inside a transaction).

        With `upto_seq`, folder removals stay: they are carried out at the end of a run.
        """
        if upto_seq is None:
            self.db.execute("DELETE FROM pending WHERE run <= ?", (run_id,))
        else:
            self.db.execute("DELETE FROM pending WHERE run=? AND seq <= ? AND op != 'rmdir'",
                            (run_id, upto_seq))
