"""How often to back up each folder: from the runs that changed it, a recommendation of
daily, weekly or monthly; pure, over a history of run times."""

from __future__ import annotations

from dataclasses import dataclass

from twofold.core.schedule import DAY

DAILY_UNDER_DAYS = 2.0  # a change at least every two days: back it up daily
WEEKLY_UNDER_DAYS = 10.0  # at least every ten days: weekly; else monthly
ENOUGH_RUNS, ENOUGH_DAYS = 4, 14


@dataclass(frozen=True)
class FolderAdvice:
    """The advice for one folder."""

    folder: str
    runs: int  # runs observed after the first (which copies everything)
    runs_changed: int
    days_changed: int  # distinct days with a change
    span_days: float
    every_days: float | None  # the mean time between changes; None when none was seen
    recommend: str  # daily, weekly or monthly
    note: str


def advise_folder(folder: str, run_times: list[int], changed: list[int]) -> FolderAdvice:
    """Advice for `folder`, given the start times of the set's complete runs (sorted) and
    those of the runs, after the first, that changed something in it."""
    span = (run_times[-1] - run_times[0]) / DAY if len(run_times) > 1 else 0.0
    later = len(run_times) - 1
    n = len(changed)
    days = len({t // DAY for t in changed})
    every = span / n if n else None
    if every is None:
        recommend = "monthly"
    elif every <= DAILY_UNDER_DAYS:
        recommend = "daily"
    elif every <= WEEKLY_UNDER_DAYS:
        recommend = "weekly"
    else:
        recommend = "monthly"
    notes = []
    if later + 1 < ENOUGH_RUNS or span < ENOUGH_DAYS:
        notes.append(f"little history ({later + 1} runs over {span:.0f} days): tentative")
    gap = span / later if later else 0.0
    if later and n >= 0.8 * later and gap > 1.5 and recommend != "daily":
        notes.append("it changed in nearly every run, so it may change more often than "
                     "it is backed up")
    return FolderAdvice(folder, later, n, days, span, every, recommend, "; ".join(notes))


def advise(run_times: list[int], changes: dict[str, list[int]]) -> list[FolderAdvice]:
    """Advice for every folder in `changes` (folder -> times of the runs changing it)."""
    times = sorted(run_times)
    return [advise_folder(f, times, sorted(changes[f])) for f in sorted(changes)]
