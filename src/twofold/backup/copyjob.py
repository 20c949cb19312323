"""Copy one new or changed file into .tmp/: a pure function that a worker process (or
thread) runs, returning what the run needs to record. Nothing here touches the catalog."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from twofold.backup.records import refreshed, to_record
from twofold.core.models import Entry
from twofold.core.names import Holds
from twofold.fsinfo.meta import apply_metadata, read_xattrs
from twofold.sets.copy import SourceReadError, copy_file, hash_file


@dataclass(slots=True)
class CopyTask:
    """One file to copy from the source to a temp file on the target."""

    src: bytes
    tmp: bytes
    entry: Entry
    old_hash: bytes | None  # for a CHECK: equal content means only metadata changed
    fsync: bool
    holds: Holds  # the metadata the target keeps


@dataclass(slots=True)
class CopyOutcome:
    """What became of a CopyTask.

    kind: "copied"; "same" (a CHECK found the content unchanged, nothing written);
    "gone" (deleted since the scan); "unreadable" (skipped); "target" (writing failed).
    """

    kind: str
    hash: bytes | None = None
    size: int = 0
    before: os.stat_result | None = None
    stable: bool = True
    xattrs: dict[str, bytes] | None = None
    problems: list[str] = field(default_factory=list)
    errno: int = 0
    message: str = ""


def _source_xattrs(src: bytes) -> dict[str, bytes]:
    try:
        return read_xattrs(src)
    except OSError as err:
        raise SourceReadError(err.errno, err.strerror, src) from err


def copy_one(task: CopyTask) -> CopyOutcome:
    """Copy (or, for a CHECK, first hash) one file; a file that changes while it is read
    is copied once more."""
    try:
        if task.old_hash is not None:
            digest, _ = hash_file(task.src)
            if digest == task.old_hash:
                return CopyOutcome("same", digest, xattrs=_source_xattrs(task.src))
        copied = None
        for attempt in range(2):
            if attempt:
                os.unlink(task.tmp)
            copied = copy_file(task.src, task.tmp, fsync=task.fsync, meta=task.entry,
                               holds=task.holds)
            if copied.stable:
                break
        assert copied is not None
        problems = copied.problems
        if refreshed(task.entry, copied.before):  # changed since the scan
            fresh = to_record(task.entry, 0, copied.hash, copied.before)
            problems = apply_metadata(task.tmp, fresh, holds=task.holds)
        return CopyOutcome("copied", copied.hash, copied.size, copied.before, copied.stable,
                           task.entry.xattrs, problems)
    except SourceReadError as err:
        if err.errno == errno.ENOENT:
            return CopyOutcome("gone")
        return CopyOutcome("unreadable", message=err.strerror or str(err))
    except OSError as err:  # the source side raises SourceReadError: this is the target
        return CopyOutcome("target", errno=err.errno or 0, message=err.strerror or str(err))


def copy_many(tasks: list[CopyTask]) -> list[CopyOutcome]:
    """A few files per hand-off; stops after a failure to write the target."""
    out: list[CopyOutcome] = []
    for task in tasks:
        out.append(copy_one(task))
        if out[-1].kind == "target":
            break
    return out
