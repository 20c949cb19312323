"""Schedules as the config writes them: daily, weekly, monthly, every N days, or a systemd
calendar expression; what each means as a period, a systemd OnCalendar and a cron check."""

from __future__ import annotations

import re
from dataclasses import dataclass

MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# systemd's own shorthands (systemd.time(7)) and the period each one means.
SHORTHANDS = {"minutely": MINUTE, "hourly": HOUR, "daily": DAY, "weekly": 7 * DAY,
              "monthly": 30 * DAY, "quarterly": 91 * DAY, "semiannually": 182 * DAY,
              "yearly": 365 * DAY, "annually": 365 * DAY}
_EVERY = re.compile(r"every\s+(\d+)\s+days?|every\s+day", re.IGNORECASE)
_WEEKDAY = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)", re.IGNORECASE)
_CALENDAR_CHARS = re.compile(r"[A-Za-z0-9*,./:~ _+-]+")
HINT = ("use daily, weekly, monthly, 'every N days' or a systemd calendar expression such "
        "as 'Mon *-*-* 02:00'")


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule. `period_ns` is None for a calendar expression whose period only
    systemd can tell (jobs/schedules.py asks it); `calendar` is the timer's OnCalendar."""

    text: str
    period_ns: int | None
    calendar: str

    @property
    def is_expression(self) -> bool:
        """True for a systemd calendar expression rather than a named period."""
        return self.period_ns is None


def parse_schedule(text: str) -> Schedule:
    """The Schedule for `text`; ValueError (with a message for the user) when it is none."""
    clean = " ".join(text.split())
    low = clean.lower()
    if low in SHORTHANDS:
        return Schedule(clean, SHORTHANDS[low], low)
    every = _EVERY.fullmatch(clean)
    if every:
        days = int(every.group(1) or 1)
        if days < 1:
            raise ValueError(f"schedule {text!r}: the number of days must be at least 1")
        # The timer checks daily; whether the job is due is decided by its last run.
        return Schedule(clean, days * DAY, "daily")
    looks_like_calendar = (any(c.isdigit() or c == "*" for c in clean)
                           or _WEEKDAY.match(clean) is not None)
    if (not looks_like_calendar or low.startswith("every")
            or not _CALENDAR_CHARS.fullmatch(clean)):
        raise ValueError(f"unknown schedule {text!r}")
    return Schedule(clean, None, clean)


def cron_check(period_ns: int, minute: int) -> str:
    """The cron time fields of a check for a job with this period: hourly for periods
    under a day, else daily (a missed weekly slot is caught the next day, because
    `run-due` decides from the last run, not from the slot)."""
    if period_ns < DAY:
        return f"{minute} * * * *"
    return f"{minute} {3 + minute % 3} * * *"


def ago(ns: int) -> str:
    """A duration in words: '45 minutes', '5 hours', '3 days'."""
    ns = max(ns, 0)
    if ns < 2 * HOUR:
        n, unit = ns // MINUTE, "minute"
    elif ns < 2 * DAY:
        n, unit = ns // HOUR, "hour"
    else:
        n, unit = ns // DAY, "day"
    return f"{n} {unit}{'' if n == 1 else 's'}"
