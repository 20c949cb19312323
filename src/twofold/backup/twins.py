"""Case twins on a case-insensitive drive: `Report.txt` and `report.txt` both survive.

A new path whose name the drive already holds in another case (or that another new path
of the same batch takes) is stored under a name with a short tag, recorded in the catalog
with the batch, so restore and later runs find it. Paths already on the drive keep the
name they have.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from twofold.store.catalog import PendingOp
from twofold.store.target import SetDir

PLACING = ("put", "link", "mkdir", "move")


def place_twins(sd: SetDir, new_ops: Iterable[PendingOp]) -> list[tuple[bytes, bytes]]:
    """Give each case twin among `new_ops` (operations creating a path that had no catalog
    row) its tagged name; returns the (path, stored name) pairs to record."""
    namer = sd.namer
    if not namer.profile.case_insensitive:
        return []
    taken: set[bytes] = set()  # folded target paths of this batch's new entries
    added: list[tuple[bytes, bytes]] = []
    for op in new_ops:
        if op.op not in PLACING:
            continue
        key = namer.fold(op.path)
        if key in taken or (os.path.lexists(sd.cur(op.path)) and not _case_rename(sd, op)):
            stored = namer.twin_name(op.path)
            namer.add_twin(op.path, stored)
            added.append((op.path, stored))
            key = namer.fold(op.path)
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
