"""Turning scanned entries into catalog rows."""

from __future__ import annotations

import os
import stat

from twofold.core.models import Entry, Record
from twofold.fsinfo.meta import group_name, owner_name


def to_record(entry: Entry, run_id: int, digest: bytes | None,
              st: os.stat_result | None = None) -> Record:
    """A new open catalog row for `entry`, with stat fields refreshed from `st` if given."""
    rec = Record(
        path=entry.path, kind=entry.kind, size=entry.size, mtime_ns=entry.mtime_ns,
        ctime_ns=entry.ctime_ns, ino=entry.ino, dev=entry.dev, nlink=entry.nlink,
        mode=entry.mode, uid=entry.uid, gid=entry.gid,
        xattrs=entry.xattrs, target=entry.target, rdev=entry.rdev, link_to=entry.link_to,
        hash=digest, first_run=run_id,
    )
    if st is not None:
        rec.size, rec.mtime_ns, rec.ctime_ns, rec.ino, rec.mode, rec.uid, rec.gid = \
            _from_stat(st)
    rec.owner, rec.group = owner_name(rec.uid), group_name(rec.gid)
    return rec


def refreshed(entry: Entry, st: os.stat_result) -> bool:
    """Whether to_record(entry, ..., st) would differ from `entry` in its signature: a
    field it takes from `st` changed (cheaper than making the record to compare)."""
    return _from_stat(st) != (entry.size, entry.mtime_ns, entry.ctime_ns, entry.ino,
                              entry.mode, entry.uid, entry.gid)


def _from_stat(st: os.stat_result) -> tuple[int, int, int, int, int, int, int]:
    """The fields a record takes from a fresh stat: size, mtime_ns, ctime_ns, ino, mode,
    uid, gid (one list for to_record and refreshed)."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, stat.S_IMODE(st.st_mode),
            st.st_uid, st.st_gid)
