"""Rows of the backup catalog as Python values: runs, entries, pending operations, and
the mapping of SQLite's disk errors to twofold's errors."""

from __future__ import annotations

import base64
import errno
import json
import os
import sqlite3
from dataclasses import dataclass
from typing import Any

from twofold.core.errors import CatalogError, TargetError, TargetFullError, TwofoldError
from twofold.core.models import Kind, Record
from twofold.core.paths import show


@dataclass(slots=True)
class Run:
    """One row of the runs table."""

    id: int
    name: str  # also the name of its versions/ folder
    started_ns: int
    finished_ns: int | None
    state: str  # running, complete, interrupted, pruned
    config: dict[str, Any]  # sources, excludes, default_excludes
    host: str
    stats: dict[str, Any]


@dataclass(slots=True)
class PendingOp:
    """A change to current/ that was committed to the catalog but may not be done yet."""

    seq: int
    op: str  # put, link, move, mkdir, remove, rmdir, meta
    path: bytes
    tmp: str | None = None
    link_to: bytes | None = None


def encode_xattrs(xattrs: dict[str, bytes] | None) -> str | None:
    """Xattrs as stored: JSON mapping each name to its base64 value; NULL when none."""
    if not xattrs:
        return None
    return json.dumps({k: base64.b64encode(v).decode() for k, v in sorted(xattrs.items())})


def decode_xattrs(text: str | None) -> dict[str, bytes] | None:
    """The inverse of encode_xattrs."""
    if not text:
        return None
    return {k: base64.b64decode(v) for k, v in json.loads(text).items()}


class DamagedRow(sqlite3.DatabaseError):
    """A row SQLite reads but twofold cannot: a damaged value (text that is not UTF-8,
    JSON or base64 that does not parse, an unknown kind). Mapped like SQLite's own
    errors (catalog_error): the catalog is damaged."""


def row_record(row: tuple[Any, ...]) -> Record:
    """The Record of an entries row (DamagedRow when a value cannot be read)."""
    try:
        return _row_record(row)
    except (ValueError, TypeError, IndexError) as err:  # UnicodeDecodeError is one
        raise DamagedRow(f"a damaged row ({err})") from err


def _row_record(row: tuple[Any, ...]) -> Record:
    return Record(
        id=row[0], path=bytes(row[1]), kind=Kind(row[2]), size=row[3], mtime_ns=row[4],
        ctime_ns=row[5], ino=row[6], mode=row[7], uid=row[8], gid=row[9], owner=row[10],
        group=row[11], xattrs=decode_xattrs(row[12]),
        target=None if row[13] is None else bytes(row[13]), rdev=row[14],
        link_to=None if row[15] is None else bytes(row[15]),
        hash=None if row[16] is None else bytes(row[16]),
        first_run=row[17], until_run=row[18], vrun=row[19],
    )


COLS = ("path, kind, size, mtime_ns, ctime_ns, ino, mode, uid, gid, owner, grp, xattrs, "
        "target, rdev, link_to, hash, first_run, until_run, vrun")
SELECT = f"SELECT id, {COLS} FROM entries"
# The columns of Entry.signature(), in its order.
SIG_SELECT = ("SELECT id, path, kind, size, mtime_ns, ctime_ns, ino, mode, uid, gid, target, "
              "rdev, link_to FROM entries")


def sig_query(upper: bool) -> str:
    """SIG_SELECT of the open rows from ?1 on (below ?2 when `upper`), in path order."""
    return (f"{SIG_SELECT} WHERE until_run IS NULL AND path >= ?1 "
            f"{'AND path < ?2 ' if upper else ''}ORDER BY path")


class SigRow:
    """An open row read with its signature only, for comparing with a scan; the Record
    is read by id when the merge needs it (a change: rare on most runs)."""

    __slots__ = ("db", "id", "path", "sig")

    def __init__(self, raw: tuple[Any, ...], db: sqlite3.Connection) -> None:
        self.id: int = raw[0]
        self.path: bytes = raw[1]
        self.sig: tuple[object, ...] = raw[2:]
        self.db = db

    def record(self) -> Record:
        """The full Record."""
        return row_record(self.db.execute(f"{SELECT} WHERE id=?", (self.id,)).fetchone())


class Row:
    """An open catalog row as the merge reads it: path and signature, the Record on demand."""

    __slots__ = ("path", "raw", "sig")

    def __init__(self, raw: tuple[Any, ...]) -> None:
        self.raw = raw
        self.path: bytes = raw[1]
        # kind, size, mtime, ctime, ino, mode, uid, gid, target, rdev, link_to: see
        # Entry.signature()
        self.sig: tuple[object, ...] = (*raw[2:10], raw[13], raw[14], raw[15])

    def record(self) -> Record:
        """The full Record."""
        return row_record(self.raw)


_FULL, _IO, _BUSY = (13,), (8, 10, 14), (5, 6)  # SQLite's primary result codes
"""SQLITE_FULL; SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN; SQLITE_BUSY, SQLITE_LOCKED."""

DAMAGED_HINT = ("the files in current/ are still plain copies you can use; `twofold repair "
                "--from TARGET --set NAME` keeps what can still be read and rebuilds the rest "
                "from current/ (the damaged file is kept beside it)")


def catalog_error(err: sqlite3.Error, path: str) -> TwofoldError:
    """The twofold error for an SQLite failure on the catalog `path`: a full or failing
    drive, a catalog in use, or (anything else) a damaged catalog."""
    text = str(err)
    code = getattr(err, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _FULL or (primary is None and "full" in text):
        return TargetFullError(
            f"the target is full (while writing the catalog {path})",
            "free some space on the drive or use a larger one; current/ is unharmed and "
            "the next run carries on where this one stopped")
    if primary in _IO or (primary is None and "I/O" in text):
        lost = not_answering(os.path.dirname(path) or ".")
        if lost is not None:
            return drive_gone(lost, path)
        return TargetError(f"reading or writing the catalog {path} failed: {text}",
                           "is the drive still connected? The next run finishes the job")
    if primary in _BUSY:
        return CatalogError(f"the catalog {path} is in use by another program: {text}",
                            "wait until it is done, then try again")
    return CatalogError(f"the catalog {path} is damaged: {text}", DAMAGED_HINT)


def to_run(row: tuple[Any, ...]) -> Run:
    """The Run of a runs row (DamagedRow when a value cannot be read)."""
    try:
        return _to_run(row)
    except (ValueError, TypeError, IndexError) as err:
        raise DamagedRow(f"a damaged run row ({err})") from err


def _to_run(row: tuple[Any, ...]) -> Run:
    return Run(id=row[0], name=row[1], started_ns=row[2], finished_ns=row[3], state=row[4],
               config=json.loads(row[5]), host=row[6], stats=json.loads(row[7] or "{}"))


DRIVE_GONE = (errno.ENOTCONN,)
"""What a drive whose FUSE driver died (or a network share cut off) answers."""


def not_answering(folder: str | bytes) -> OSError | None:
    """The error of a drive that no longer answers for `folder` (a listing: a look at the
    folder alone may be answered from the kernel's cache), else None."""
    try:
        os.listdir(folder)
    except OSError as err:
        return err if err.errno in DRIVE_GONE else None
    return None


def drive_gone(err: OSError, where: str) -> TargetError:
    """The error for a drive that no longer answers (ENOTCONN)."""
    return TargetError(
        f"the drive holding {where} is gone: {err.strerror or err} (its driver stopped, "
        "or it was pulled out)",
        "connect the drive again (a FUSE drive: unmount and mount it again) and run "
        "again; current/ holds only whole files, and the next run finishes the job")


def target_failure(err: OSError, what: bytes | str) -> TargetError:
    """The error to raise when writing to the target fails."""
    where = show(what) if isinstance(what, bytes) else what
    if err.errno in DRIVE_GONE:
        return drive_gone(err, where)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return TargetFullError(
            f"the target is full (while writing {where})",
            "free some space on the drive or use a larger one; current/ is unharmed and "
            "the next run carries on where this one stopped")
    return TargetError(
        f"writing to the target failed at {where}: {err.strerror or err}",
        "is the drive still connected? current/ holds only whole files; once the drive "
        "is back, the next run finishes the job")
