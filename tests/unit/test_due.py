"""Schedules and the due rule: parsing, due/overdue/failing with an injected clock over a
synthetic run history."""

from __future__ import annotations

import pytest

from twofold.core.due import DUE, FAILING, MANUAL, OVERDUE, JobFacts, judge
from twofold.core.schedule import DAY, HOUR, ago, cron_check, parse_schedule

T0 = 1_780_000_000 * 10**9  # a fixed "now" for every case


@pytest.mark.parametrize(("text", "period", "calendar"), [
    ("daily", DAY, "daily"),
    ("Weekly", 7 * DAY, "weekly"),
    ("monthly", 30 * DAY, "monthly"),
    ("every 3 days", 3 * DAY, "daily"),
    ("every  1 day", DAY, "daily"),
    ("every day", DAY, "daily"),
    ("Mon *-*-* 02:00", None, "Mon *-*-* 02:00"),
    ("*-*-1,15 03:30", None, "*-*-1,15 03:30"),
])
def test_schedules_parse(text: str, period: int | None, calendar: str) -> None:
    s = parse_schedule(text)
    assert (s.period_ns, s.calendar) == (period, calendar)


@pytest.mark.parametrize("text", ["dayly", "", "every 0 days", "every -2 days", "now;rm"])
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(text)


def test_cron_checks_daily_or_hourly() -> None:
    assert cron_check(7 * DAY, 17) == "17 5 * * *"
    assert cron_check(HOUR, 5) == "5 * * * *"


def history_verdict(period_days: float, run_days_ago: list[float],
                    result: str | None = "ok") -> str:
    """Judge a job whose successful runs were `run_days_ago` days before now."""
    runs = sorted(T0 - int(d * DAY) for d in run_days_ago)
    facts = JobFacts(period_ns=int(period_days * DAY), last_ok_ns=runs[-1] if runs else None,
                     last_result=result, schedule="test")
    return judge(facts, T0).state


@pytest.mark.parametrize(("period", "history", "state"), [
    (1, [3, 2, 0.5], "current"),
    (1, [3, 2, 0.9], "due"),         # 7/8 of a day passed: a timer a little early still runs
    (1, [5, 1.5], "due"),
    (1, [5, 2.1], "overdue"),        # a day and a day of grace
    (7, [14, 6.2], "due"),
    (7, [14, 5], "current"),
    (7, [20, 10], "due"),
    (7, [20, 10.6], "overdue"),      # a week and half a week
    (30, [40, 27], "due"),
    (30, [90, 46], "overdue"),
    (1, [], "overdue"),              # never completed
])
def test_due_over_a_history(period: float, history: list[float], state: str) -> None:
    assert history_verdict(period, history) == state


def test_failing_wins_and_says_why() -> None:
    f = JobFacts(DAY, T0 - HOUR, "failed", "the drive is full")
    v = judge(f, T0)
    assert v.state == FAILING and v.attention and "the drive is full" in v.reason


def test_manual_jobs_are_never_overdue() -> None:
    v = judge(JobFacts(None, T0 - 400 * DAY), T0)
    assert v.state == MANUAL and not v.attention and "400 days" in v.reason


def test_os_change_makes_an_image_due_and_age_makes_it_overdue() -> None:
    reason = "27 packages changed since the image of 2026-08-01"
    v = judge(JobFacts(90 * DAY, T0 - 10 * DAY, "ok", change_reason=reason), T0)
    assert v.state == DUE and v.reason == reason and not v.attention
    v = judge(JobFacts(90 * DAY, T0 - 200 * DAY, "ok", change_reason=reason), T0)
    assert v.state == OVERDUE and "200 days" in v.reason


def test_partial_runs_count_as_success_with_a_note() -> None:
    v = judge(JobFacts(DAY, T0 - HOUR, "partial", "3 skipped"), T0)
    assert v.state == "current" and "3 skipped" in v.reason


def test_ago_words() -> None:
    assert [ago(x) for x in (90 * 10**9, 5 * HOUR, 3 * DAY, DAY)] == \
        ["1 minute", "5 hours", "3 days", "24 hours"]
