"""Which run `--as-of RUN|TIME` names: a run id, or the last run completed by a time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo

from twofold.core.errors import UsageError

RESTORABLE = ("complete",)


def parse_when(text: str, tz: tzinfo) -> int:
    """An ISO 8601 date or date-time as ns since the epoch; a bare date means its end."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--as-of {text!r} is neither a run id nor an ISO 8601 time",
                         "examples: 3, 2026-11-20, 2026-11-20T18:30") from None
    if len(text.strip()) <= 10:  # a date alone: runs completed by the end of that day
        when += timedelta(days=1) - timedelta(microseconds=1)
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return int(when.timestamp() * 1_000_000_000)


def resolve_as_of(runs: Sequence[tuple[int, int | None, str]], spec: str | None,
                  tz: tzinfo) -> int:
    """The run id meant by `spec`, from (id, finished ns, state) triples, oldest first."""
    done = [(rid, fin) for rid, fin, state in runs if state in RESTORABLE and fin is not None]
    if not done:
        raise UsageError("this set has no completed run yet", "run a backup first")
    if spec is None:
        return done[-1][0]
    if spec.strip().isdigit():
        rid = int(spec)
        states = {r: s for r, _, s in runs}
        if rid not in states:
            raise UsageError(f"there is no run {rid}", "`twofold runs` lists the runs")
        if states[rid] not in RESTORABLE:
            raise UsageError(f"run {rid} is {states[rid]}, not complete",
                             "choose a completed run from `twofold runs`")
        return rid
    limit = parse_when(spec, tz)
    before = [rid for rid, fin in done if fin <= limit]
    if not before:
        raise UsageError(f"no run had completed by {spec}",
                         "`twofold runs` lists when each run completed")
    return before[-1]
