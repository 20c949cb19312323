"""Pure rules: retention, --as-of resolution, path helpers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from twofold.core.asof import parse_when, resolve_as_of
from twofold.core.errors import UsageError
from twofold.core.paths import from_user, is_within
from twofold.core.retention import Policy, needed, runs_to_keep


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1e9)


# Run i happened on day i of 2026 at noon; two runs on day 3 (ids 3 and 4).
RUNS = [(1, ns("2026-01-01T12:00")), (2, ns("2026-01-02T12:00")),
        (3, ns("2026-01-03T09:00")), (4, ns("2026-01-03T18:00")),
        (5, ns("2026-01-10T12:00")), (6, ns("2026-02-01T12:00"))]


def test_keep_daily_takes_the_last_run_of_each_day() -> None:
    assert runs_to_keep(RUNS, Policy(daily=3)) == {6, 5, 4}


def test_keep_weekly_and_monthly() -> None:
    # ISO weeks: Jan 1-3 are week 1 of 2026, Jan 10 week 2, Feb 1 week 5.
    assert runs_to_keep(RUNS, Policy(weekly=2)) == {6, 5}
    assert runs_to_keep(RUNS, Policy(monthly=2)) == {6, 5}
    assert runs_to_keep(RUNS, Policy(daily=1, monthly=5)) == {6, 5}


def test_newest_is_always_kept_and_empty_is_empty() -> None:
    assert runs_to_keep(RUNS, Policy()) == {6}
    assert runs_to_keep([], Policy(daily=3)) == set()


def test_needed_version() -> None:
    assert needed(2, 5, [1, 4, 9])
    assert not needed(2, 4, [1, 4, 9])
    assert not needed(5, 9, [1, 4, 9])


STATES = [(1, ns("2026-01-01T12:00"), "complete"), (2, ns("2026-01-02T12:00"), "complete"),
          (3, None, "interrupted"), (4, ns("2026-01-05T12:00"), "complete")]


def test_as_of_run_id_time_and_date() -> None:
    assert resolve_as_of(STATES, None, UTC) == 4
    assert resolve_as_of(STATES, "2", UTC) == 2
    assert resolve_as_of(STATES, "2026-01-02T13:00", UTC) == 2
    assert resolve_as_of(STATES, "2026-01-02T11:00", UTC) == 1
    assert resolve_as_of(STATES, "2026-01-02", UTC) == 2  # a date means its end
    assert resolve_as_of(STATES, "2026-01-02T12:00:00+00:00", UTC) == 2


@pytest.mark.parametrize("spec", ["3", "9", "2025-12-31", "yesterday"])
def test_as_of_refusals(spec: str) -> None:
    with pytest.raises(UsageError):
        resolve_as_of(STATES, spec, UTC)


def test_parse_when_uses_the_given_zone() -> None:
    assert parse_when("2026-01-01T00:00", UTC) == ns("2026-01-01T00:00")


def test_paths() -> None:
    assert from_user("./Docs//a/") == b"Docs/a"
    assert is_within(b"a/b", b"a") and not is_within(b"ab", b"a")
