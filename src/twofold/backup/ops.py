"""Changes to current/, each idempotent, so an interrupted run can be finished by the next.

Every change was first committed to the catalog as a pending operation; these functions
look at the target to see what part of an operation is already done.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from twofold.core.errors import TargetError, TargetFullError
from twofold.core.models import Entry, Kind
from twofold.core.paths import show
from twofold.fsinfo.meta import apply_metadata
from twofold.store.catalog import PendingOp
from twofold.store.target import SetDir


def target_failure(err: OSError, what: bytes | str) -> TargetError:
    """The error to raise when writing to the target fails."""
    where = show(what) if isinstance(what, bytes) else what
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return TargetFullError(
            f"the target is full (while writing {where})",
            "free some space on the drive or use a larger one; current/ is unharmed and "
            "the next run carries on where this one stopped")
    return TargetError(
        f"writing to the target failed at {where}: {err.strerror or err}",
        "is the drive still connected? current/ holds only whole files; once the drive "
        "is back, the next run finishes the job")


def move_aside(sd: SetDir, run_name: str, rel: bytes) -> None:
    """Move current/<rel> to versions/<run>/<rel> (a rename on the same drive)."""
    dest = sd.ver(run_name, rel)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "version already kept", dest)
    os.rename(sd.cur(rel), dest)


def _is_dir(path: bytes) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def apply_op(sd: SetDir, run_name: str, op: PendingOp,
             entry_of: Callable[[bytes], Entry | None]) -> None:
    """Carry out one pending operation, skipping whatever part of it is already done."""
    cur = sd.cur(op.path)
    if op.op == "put":
        assert op.tmp is not None
        tmp = os.path.join(sd.tmp, os.fsencode(op.tmp))
        if not os.path.lexists(tmp):
            return  # renamed into place before
        if os.path.lexists(cur):
            move_aside(sd, run_name, op.path)
        os.rename(tmp, cur)
    elif op.op == "link":
        assert op.link_to is not None
        first = sd.cur(op.link_to)
        if os.path.lexists(cur):
            if os.path.exists(first) and os.path.samefile(cur, first):
                return
            move_aside(sd, run_name, op.path)
        os.link(first, cur, follow_symlinks=False)
    elif op.op == "mkdir":
        if os.path.lexists(cur) and not _is_dir(cur):
            move_aside(sd, run_name, op.path)
        os.makedirs(cur, exist_ok=True)
        _apply_meta(cur, entry_of(op.path))
    elif op.op == "remove":
        if os.path.lexists(cur) and not os.path.lexists(sd.ver(run_name, op.path)):
            move_aside(sd, run_name, op.path)
    elif op.op == "meta":
        if os.path.lexists(cur):
            _apply_meta(cur, entry_of(op.path))
    else:
        raise ValueError(f"unknown pending operation {op.op!r}")


def _apply_meta(path: bytes, entry: Entry | None) -> None:
    if entry is not None:  # folder times are set at the end of a run, after their contents
        apply_metadata(path, entry, times=entry.kind is not Kind.DIR)
