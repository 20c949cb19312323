"""One planned change as the applier carries it out (a Step), the check that a catalog
row's path stays inside the set's folder, and the tally of a done step into the run's
counts and progress."""

from __future__ import annotations

from dataclasses import dataclass

from twofold.core.diff import Action, Change
from twofold.core.models import Issue, Kind, Record, RunStats
from twofold.core.paths import unsafe
from twofold.core.progress import Progress
from twofold.sets.catalog import PendingOp


@dataclass(slots=True)
class Step:
    """What one change amounts to: a new row, an operation, an old row to close."""

    change: Change
    record: Record | None = None
    op: PendingOp | None = None
    close: tuple[int, bool] | None = None  # (old row id, content moved to versions/)
    issue: Issue | None = None
    copied: int = 0


def unsafe_step(step: Step) -> bool:
    """A catalog row whose path would leave the set's folder (a crafted catalog) is named
    once and closed; nothing on the drive is touched for it."""
    why = unsafe(step.change.path)
    if why is not None:
        step.issue = Issue(step.change.path, "unsafe", f"left alone: {why} (a crafted "
                           "or damaged catalog? `twofold repair` rebuilds it)")
        if step.change.old is not None:
            step.close = (step.change.old.id, False)
    return why is not None


def tally(step: Step, st: RunStats, progress: Progress, dir_mtime: dict[bytes, int],
          touched: set[bytes]) -> None:
    """Count a done step in `st` and report it; a folder it wrote goes into `dir_mtime`
    and `touched`, so its time is set at the end of the run."""
    if step.issue is not None:
        st.issues.append(step.issue)
        progress.issue(step.issue)
        if step.issue.kind == "skipped":
            st.skipped += 1
            entry = step.change.entry
            if entry is not None and entry.kind is Kind.FILE and step.record is None:
                st.files_total -= 1  # not in the backup: the summary says what is
                st.bytes_total -= entry.size
        elif step.issue.kind == "special":
            st.special += 1
    if step.op is not None and step.op.op == "move":
        st.moved += 1
        progress.advance(1, 0)
        return
    if step.record is None and step.change.action is not Action.DELETED:
        return
    action = step.change.action
    if action is Action.CHECK:
        action = Action.META if step.op is not None and step.op.op == "meta" \
            else Action.CHANGED
    if action is Action.NEW:
        st.new += 1
    elif action is Action.CHANGED:
        st.changed += 1
    elif action is Action.META:
        st.metadata += 1
    elif action is Action.DELETED:
        st.deleted += 1
    st.bytes_copied += step.copied
    if step.record is not None and step.record.kind is Kind.DIR:
        dir_mtime[step.record.path] = step.record.mtime_ns
        touched.add(step.record.path)
    if step.change.entry is not None and step.change.entry.kind is not Kind.DIR:
        progress.advance(1, 0)
