"""Changes to current/, each idempotent, so an interrupted run can be finished by the next.

Every change was first committed to the catalog as a pending operation; these functions
look at the target to see what part of an operation is already done.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable

from twofold.backup.fresh import Fresh
from twofold.core.models import Entry, Kind
from twofold.core.paths import unsafe
from twofold.fsinfo.disk import rename_new
from twofold.fsinfo.meta import apply_metadata, set_mtime
from twofold.sets.catalog import PendingOp
from twofold.sets.target import SetDir, target_failure


def move_aside(sd: SetDir, run_name: str, rel: bytes) -> None:
    """Move current/<rel> to versions/<run>/<rel> (a rename on the same drive)."""
    _aside(sd, sd.cur(rel), sd.ver(run_name, rel))


def _aside(sd: SetDir, cur: bytes, dest: bytes) -> None:
    sd.makedirs(os.path.dirname(dest))
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "version already kept", dest)
    os.rename(cur, dest)


def _link_or_copy(sd: SetDir, src: bytes, dst: bytes) -> None:
    sd.makedirs(os.path.dirname(dst))
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:  # no hard links on this drive: a copy on the drive itself
        shutil.copyfile(src, dst, follow_symlinks=False)
        with contextlib.suppress(OSError):  # drives without modes refuse some of it
            shutil.copystat(src, dst, follow_symlinks=False)


def _move(sd: SetDir, run_name: str, old: bytes, new: bytes) -> None:
    """Rename current/<old> to current/<new>, keeping the old name in versions/<run>/.

    The versions/ name is a hard link, so nothing is copied. Each step checks whether it
    is already done.
    """
    cur_old, cur_new, kept = sd.cur(old), sd.cur(new), sd.ver(run_name, old)
    if os.path.lexists(cur_old):
        if not os.path.lexists(kept) and sd.namer.profile.hardlinks:
            _link_or_copy(sd, cur_old, kept)  # else the catalog's moves table finds it
        if os.path.lexists(cur_new) and not _same(cur_old, cur_new):  # not a change of case
            move_aside(sd, run_name, new)
        sd.makedirs(os.path.dirname(cur_new))
        os.rename(cur_old, cur_new)
    elif not os.path.lexists(cur_new) and os.path.lexists(kept):
        _link_or_copy(sd, kept, cur_new)  # the old folder went to versions/ with it


def _same(a: bytes, b: bytes) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _remove_tree(sd: SetDir, run_name: str, rel: bytes) -> None:
    """Remove a deleted folder from current/ once its contents have moved out.

    Anything still inside (nothing, normally) goes to versions/ rather than away.
    """
    top = sd.cur(rel)
    if not _is_dir(top):
        return
    kept = os.path.join(sd.versions, os.fsencode(run_name))
    for dirpath, dirs, files in os.walk(top, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            inner = os.path.join(dirpath, name)  # names here are as stored on the target
            dest = os.path.join(kept, os.path.relpath(inner, sd.current))
            if not os.path.lexists(dest):
                _aside(sd, inner, dest)
        with contextlib.suppress(OSError):  # never delete what could not be kept
            os.rmdir(dirpath)


def _is_dir_row(entry: Entry | None) -> bool:
    return entry is not None and entry.kind is Kind.DIR


def _is_dir(path: bytes) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def apply_op(sd: SetDir, run_name: str, op: PendingOp,
             entry_of: Callable[[bytes], Entry | None], *, replay: bool = True,
             fresh: Fresh | None = None) -> None:
    """Carry out one pending operation, skipping whatever part of it is already done.

    `replay=False` (the run that planned the operation) skips checks only a replay needs;
    `fresh`: the folders that run made, where a new name needs no look (see fresh.py).
    """
    no_symlink_above(sd, run_name, op.path)
    if op.link_to is not None:
        no_symlink_above(sd, run_name, op.link_to)
    cur = sd.cur(op.path)
    if op.op == "put":
        assert op.tmp is not None
        tmp = os.path.join(sd.tmp, os.fsencode(op.tmp))
        if replay and not os.path.lexists(tmp):
            return  # renamed into place before
        if fresh is not None and fresh.absent(cur):
            os.rename(tmp, cur)
        elif not rename_new(tmp, cur):  # what is there now goes to versions/ first
            move_aside(sd, run_name, op.path)
            os.rename(tmp, cur)
    elif op.op == "link":
        assert op.link_to is not None
        first = sd.cur(op.link_to)
        if os.path.lexists(cur):
            if os.path.exists(first) and os.path.samefile(cur, first):
                return
            move_aside(sd, run_name, op.path)
        if sd.namer.profile.hardlinks:
            os.link(first, cur, follow_symlinks=False)
        else:
            _link_or_copy(sd, first, cur)
    elif op.op == "mkdir":
        there = not (fresh is not None and fresh.absent(cur)) and os.path.lexists(cur)
        if there and not _is_dir(cur):
            move_aside(sd, run_name, op.path)
            there = False
        sd.makedirs(cur)
        if fresh is not None and not there:
            fresh.made(cur)
        _apply_meta(sd, cur, entry_of(op.path))
    elif op.op == "move":
        assert op.link_to is not None
        _move(sd, run_name, op.link_to, op.path)
        if os.path.lexists(cur):
            _apply_meta(sd, cur, entry_of(op.path))
    elif op.op == "rmdir":
        _remove_tree(sd, run_name, op.path)
    elif op.op == "remove":
        if os.path.lexists(cur) and not os.path.lexists(sd.ver(run_name, op.path)):
            move_aside(sd, run_name, op.path)
    elif op.op == "meta":
        if _is_dir_row(entry_of(op.path)) and os.path.islink(cur):  # planted: replaced
            no_symlink_above(sd, run_name, op.path + b"/-")
        if os.path.lexists(cur):
            _apply_meta(sd, cur, entry_of(op.path))
    else:
        raise ValueError(f"unknown pending operation {op.op!r}")
    if fresh is not None:
        fresh.claim(cur)


def no_symlink_above(sd: SetDir, run_name: str, rel: bytes) -> None:
    """Make sure no folder above current/<rel> is a symlink: one planted on the drive where
    a folder belongs is moved to versions/<run>/ (kept, not followed) and a real folder
    made in its place, so nothing is written through it (a folder removed from the drive
    is made again). Each folder is looked at
    once per run (sd.real_dirs); docs/DESIGN.md, "Paths from a drive"."""
    unseen: list[bytes] = []
    end = rel.rfind(b"/")
    while end > 0:  # nearest first: once a folder was seen, so were those above it
        prefix = rel[:end]
        if prefix in sd.real_dirs:
            break
        unseen.append(prefix)
        end = rel.rfind(b"/", 0, end)
    for prefix in reversed(unseen):  # from the top down
        try:
            link = stat.S_ISLNK(os.lstat(sd.cur(prefix)).st_mode)
        except FileNotFoundError:  # removed from the drive: made again
            os.mkdir(sd.cur(prefix))
            link = False
        except NotADirectoryError:
            link = False
        if link:
            move_aside(sd, run_name, prefix)
            os.mkdir(sd.cur(prefix))  # what it held is missing: verify names it
        sd.real_dirs.add(prefix)


def set_dir_times(sd: SetDir, dirs: set[bytes], known: dict[bytes, int],
                  open_row: Callable[[bytes], Entry | None]) -> None:
    """Give folders in current/ their source mtime, deepest first (after their contents)."""
    for rel in sorted(dirs, key=lambda p: p.count(b"/"), reverse=True):
        if not rel or unsafe(rel):
            continue
        mtime = known.get(rel)
        if mtime is None:
            row = open_row(rel)
            if row is None or row.kind is not Kind.DIR:
                continue
            mtime = row.mtime_ns
        try:
            set_mtime(sd.cur(rel), mtime, follow=False)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise target_failure(err, rel) from err


def _apply_meta(sd: SetDir, path: bytes, entry: Entry | None) -> None:
    if entry is not None and entry.kind is not Kind.SYMLINK and os.path.islink(path):
        return  # planted on the drive: never followed (no_symlink_above replaces folders)
    if entry is not None:  # folder times are set at the end of a run, after their contents
        apply_metadata(path, entry, times=entry.kind is not Kind.DIR, exact_xattrs=True,
                       holds=sd.namer.profile.holds)
