"""Whether a job is current, due, overdue or failing: a pure rule over its last runs, its
period and the time now (injected), so it is tested with any history and any clock."""

from __future__ import annotations

from dataclasses import dataclass

from twofold.core.schedule import DAY, ago

CURRENT, DUE, OVERDUE, FAILING, MANUAL = "current", "due", "overdue", "failing", "manual"


@dataclass(frozen=True)
class JobFacts:
    """What is known about a job when judging it."""

    period_ns: int | None  # None: no schedule, runs only by hand
    last_ok_ns: int | None  # the last run that finished (ok or with items skipped)
    last_result: str | None = None  # of the most recent attempt: ok, partial, failed
    last_detail: str = ""  # why it failed, or how many items were skipped
    change_reason: str | None = None  # images: why the system changed since the last one
    schedule: str = ""  # the schedule as written, for the reason


@dataclass(frozen=True)
class Verdict:
    """The judgement: a state, the reason in words, and whether someone should act."""

    state: str
    reason: str

    @property
    def due(self) -> bool:
        """A run should happen now."""
        return self.state in (DUE, OVERDUE, FAILING)

    @property
    def attention(self) -> bool:
        """Overdue or failing: `status` exits 4 and notifies."""
        return self.state in (OVERDUE, FAILING)


def due_after(period_ns: int) -> int:
    """A job becomes due after 7/8 of its period, so that a timer firing a little early
    (a daily run at 00:03, the next check at 00:01) does not skip a whole period."""
    return period_ns - period_ns // 8


def overdue_after(period_ns: int) -> int:
    """A job is overdue when a run is missing for half a period more (at least a day)."""
    return period_ns + max(DAY, period_ns // 2)


def judge(f: JobFacts, now_ns: int) -> Verdict:
    """Judge a job at `now_ns`."""
    age = None if f.last_ok_ns is None else now_ns - f.last_ok_ns
    since = "never completed" if age is None else f"last successful run {ago(age)} ago"
    if f.last_result == "failed":
        detail = f": {f.last_detail}" if f.last_detail else ""
        return Verdict(FAILING, f"the last run failed{detail}; {since}")
    if f.period_ns is None:
        return Verdict(MANUAL, f"no schedule; {since}")
    if age is None:
        return Verdict(OVERDUE, since)
    if age >= overdue_after(f.period_ns):
        wanted = f.schedule or f"every {ago(f.period_ns)}"
        return Verdict(OVERDUE, f"{since}; the schedule is {wanted}")
    if f.change_reason:
        return Verdict(DUE, f.change_reason)
    if age >= due_after(f.period_ns):
        return Verdict(DUE, since)
    note = f" ({f.last_detail})" if f.last_result == "partial" and f.last_detail else ""
    return Verdict(CURRENT, f"{since}{note}")
