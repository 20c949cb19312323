"""Plan a run: count the changes the planning workers found and pair moved files.

Planning first lets a run be judged (dry run, mass-delete guard) before anything on the
target is touched, while memory stays bounded: the changes wait on disk in the workers'
spool files (see planproc), not in a list, and are read again to be applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from twofold.backup.planproc import Planned
from twofold.core.diff import Action, Change, Tally
from twofold.core.models import Issue, Kind
from twofold.core.progress import Progress

MAX_MOVE_CANDIDATES = 200_000  # new files remembered for pairing with deleted ones

MoveKey = tuple[int, int, int]  # inode, size, mtime_ns


def _pairable(change: Change) -> MoveKey | None:
    """The key by which a new file and a deleted one are recognised as one moved file."""
    e = change.entry if change.action is Action.NEW else change.old
    if change.action not in (Action.NEW, Action.DELETED) or e is None:
        return None
    if e.kind is not Kind.FILE or e.link_to is not None or e.nlink > 1 or not e.ino:
        return None
    return (e.ino, e.size, e.mtime_ns)


@dataclass
class Plan:
    """What a run will do, with its changes spooled in path order."""

    counts: dict[Action, int] = field(default_factory=lambda: dict.fromkeys(Action, 0))
    copy_files: int = 0
    copy_bytes: int = 0
    moves: int = 0  # files, links and specials to leave current/ (deleted in the source)
    moved_from: dict[bytes, bytes] = field(default_factory=dict)  # old path -> new path
    moved_to: dict[bytes, bytes] = field(default_factory=dict)  # new path -> old path
    files_total: int = 0
    bytes_total: int = 0
    issues: list[Issue] = field(default_factory=list)
    source: Planned | None = None  # where the changes are read again

    def add(self, change: Change) -> None:
        """Count a change."""
        self.counts[change.action] += 1
        e, old = change.entry, change.old
        if e is not None and e.kind is Kind.FILE:
            self.files_total += 1
            self.bytes_total += e.size
        if change.action in (Action.UNCHANGED, Action.SKIPPED, Action.CARRIED):
            return
        if e is not None and e.kind is Kind.FILE and e.link_to is None and \
                change.action in (Action.NEW, Action.CHANGED, Action.CHECK):
            self.copy_files += 1
            self.copy_bytes += e.size
        if old is not None and old.kind is not Kind.DIR and change.action is Action.DELETED:
            self.moves += 1  # edits are not counted: the mass-delete guard is about loss

    def changes(self) -> Iterator[Change]:
        """The changes to apply, in path order."""
        if self.source is None:
            return
        idle = (Action.UNCHANGED, Action.SKIPPED, Action.CARRIED)
        for change in self.source.replay():
            if change.action not in idle:
                yield change

    def close(self) -> None:
        """Drop the planned changes."""
        if self.source is not None:
            self.source.close()


def make_plan(changes: Planned, progress: Progress) -> Plan:
    """Count the changes of a run (see planproc) into a Plan and pair moved files; the
    changes stay where `changes` keeps them."""
    plan = Plan(source=changes)
    try:
        _count(plan, changes, progress)
    except BaseException:
        plan.close()
        raise
    return plan


def _count(plan: Plan, changes: Planned, progress: Progress) -> None:
    """Count every change into `plan`; pair the new and deleted files that are one move."""
    progress.phase("scanning")
    born: dict[MoveKey, bytes | None] = {}
    gone: dict[MoveKey, bytes | None] = {}
    unchanged = Action.UNCHANGED
    file_kind = Kind.FILE  # enum attribute lookups are slow on Python 3.11: hoisted
    same = files = nbytes = 0
    for change in changes:
        if type(change) is Tally:
            progress.advance(change.seen)
            same += change.same
            files += change.files
            nbytes += change.nbytes
            continue
        assert isinstance(change, Change)
        if change.action is unchanged:  # the common case, kept lean
            same += 1
            e = change.entry
            if e is not None and e.kind is file_kind:
                files += 1
                nbytes += e.size
            continue
        plan.add(change)
        key = _pairable(change)
        if key is not None:
            side = born if change.action is Action.NEW else gone
            if side is gone or len(born) < MAX_MOVE_CANDIDATES:
                side[key] = None if key in side else change.path  # None: ambiguous
        if change.action is Action.SKIPPED:
            issue = Issue(change.path, "skipped", change.reason)
            plan.issues.append(issue)
            progress.issue(issue)
    plan.counts[unchanged] += same
    plan.files_total += files
    plan.bytes_total += nbytes
    for key, old in gone.items():
        new = born.get(key)
        if old is not None and new is not None:
            plan.moved_from[old] = new
            plan.moved_to[new] = old
            plan.copy_bytes -= key[1]
    plan.moves -= len(plan.moved_from)  # a moved file stays in current/
    plan.copy_files -= len(plan.moved_to)
