"""Case twins on a case-insensitive drive: `Report.txt` and `report.txt` both survive.

A new path whose name the drive already holds in another case (or that another new path
of the same batch takes) is stored under a name with a short tag, recorded in the catalog
with the batch, so restore and later runs find it. Paths already on the drive keep the
name they have.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from twofold.backup.fresh import Fresh
from twofold.sets.catalog import PendingOp
from twofold.sets.target import SetDir

PLACING = ("put", "link", "mkdir", "move")


def place_twins(sd: SetDir, new_ops: Iterable[PendingOp],
                fresh: Fresh | None = None) -> list[tuple[bytes, bytes]]:
    """Give each case twin among `new_ops` (operations creating a path that had no catalog
    row) its tagged name; returns the (path, stored name) pairs to record.

    `fresh`: folders the run made (fresh.py). Nothing is looked for in those, nor in the
    folders this batch will make, beyond what this batch itself puts there."""
    namer = sd.namer
    if not namer.profile.case_insensitive:
        return []
    taken: set[bytes] = set()  # folded target paths of this batch's new entries
    coming: set[bytes] = set()  # folders this batch makes where nothing is now
    added: list[tuple[bytes, bytes]] = []
    for op in new_ops:
        if op.op not in PLACING:
            continue
        key = namer.fold(op.path)
        cur = sd.cur(op.path)
        surely_absent = os.path.dirname(cur) in coming or (fresh is not None and
                                                           fresh.absent(cur))
        there = not surely_absent and os.path.lexists(cur)
        if key in taken or (there and not _case_rename(sd, op)):
            stored = namer.twin_name(op.path)
            namer.add_twin(op.path, stored)
            added.append((op.path, stored))
            key = namer.fold(op.path)
        elif op.op == "mkdir" and not there:
            coming.add(cur)
        taken.add(key)
    return added


def _case_rename(sd: SetDir, op: PendingOp) -> bool:
    """True for a move whose new name is its old one in another case (the same file)."""
    if op.op != "move" or op.link_to is None:
        return False
    try:
        return os.path.samefile(sd.cur(op.link_to), sd.cur(op.path))
    except OSError:
        return False
