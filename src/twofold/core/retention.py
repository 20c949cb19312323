"""Which runs a keep-daily/weekly/monthly policy keeps: a pure function of run times."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo


@dataclass(frozen=True, slots=True)
class Policy:
    """How many days, weeks and months keep their last run."""

    daily: int = 0
    weekly: int = 0
    monthly: int = 0


def runs_to_keep(runs: Sequence[tuple[int, int]], policy: Policy,
                 tz: tzinfo = UTC) -> set[int]:
    """Ids of the runs to keep, from (run id, finished time in ns) pairs.

    For each of the last N days (weeks, months) that have a run, the last run of that
    period is kept; the newest run is always kept.
    """
    if not runs:
        return set()
    newest_first = sorted(runs, key=lambda r: (r[1], r[0]), reverse=True)
    stamps = [(rid, datetime.fromtimestamp(t / 1e9, tz)) for rid, t in newest_first]
    keep = {newest_first[0][0]}
    buckets: list[tuple[int, Callable[[datetime], Hashable]]] = [
        (policy.daily, lambda d: d.date()),
        (policy.weekly, lambda d: d.isocalendar()[:2]),
        (policy.monthly, lambda d: (d.year, d.month)),
    ]
    for count, key_of in buckets:
        last: Hashable = None
        kept = 0
        for rid, when in stamps:
            if kept >= count:
                break
            key = key_of(when)
            if key != last:
                keep.add(rid)
                kept += 1
                last = key
    return keep


def needed(first_run: int, until_run: int, kept_sorted: Sequence[int]) -> bool:
    """True when some kept run k has first_run <= k < until_run (a version it shows)."""
    from bisect import bisect_left

    i = bisect_left(kept_sorted, first_run)
    return i < len(kept_sorted) and kept_sorted[i] < until_run
