"""Frequency advice: the pure rule over synthetic histories, and `advise` over a real
catalog made by 29 backups on simulated days (the engine takes an injected clock)."""

from __future__ import annotations

from pathlib import Path

from tests.jobs.conftest import Cli, json_of
from twofold.backup.engine import BackupOptions, backup
from twofold.core.advice import advise, advise_folder
from twofold.core.progress import NullProgress
from twofold.core.schedule import DAY, HOUR
from twofold.jobs.advise import advise_set

T0 = 1_780_000_000 * 10**9


def days(*d: float) -> list[int]:
    return [T0 + int(x * DAY) for x in d]


def test_rule_over_synthetic_histories() -> None:
    daily_runs = days(*range(30))
    a = advise(daily_runs, {"Docs": daily_runs[1:], "Pics": days(7, 14, 21, 28),
                            "Music": []})
    assert [(x.folder, x.recommend) for x in a] == \
        [("Docs", "daily"), ("Music", "monthly"), ("Pics", "weekly")]
    assert a[0].every_days is not None and round(a[0].every_days, 2) == 1.0
    assert a[1].every_days is None and a[2].days_changed == 4 and a[2].note == ""


def test_weekly_runs_that_always_change_warn() -> None:
    weekly = days(0, 7, 14, 21, 28)
    a = advise_folder("Docs", weekly, weekly[1:])
    assert a.recommend == "weekly" and "nearly every run" in a.note


def test_little_history_is_tentative() -> None:
    a = advise_folder("Docs", days(0, 1), days(1))
    assert a.recommend == "daily" and "little history" in a.note


class StepClock:
    """A clock that is set by the test."""

    now = T0

    def now_ns(self) -> int:
        return self.now


def test_advise_over_a_real_catalog(cli: Cli, tmp_path: Path) -> None:
    src = {n: tmp_path / n for n in ("Docs", "Pics", "Music")}
    for p in src.values():
        p.mkdir()
        (p / "first.txt").write_text("first")
    drive = tmp_path / "drive"
    drive.mkdir()
    clock = StepClock()
    for day in range(29):
        clock.now = T0 + day * DAY + 20 * HOUR
        (src["Docs"] / "diary.txt").write_text(f"day {day}")
        if day % 7 == 6:
            (src["Pics"] / f"week{day}.jpg").write_text("pic")
        backup([str(p) for p in src.values()], str(drive), "home", BackupOptions(), clock,
               NullProgress())
    got = {a.folder: a for a in advise_set(str(drive), "home")}
    assert {f: a.recommend for f, a in got.items()} == \
        {"Docs": "daily", "Pics": "weekly", "Music": "monthly"}
    assert got["Docs"].runs == 28 and got["Pics"].runs_changed == 4
    conf = (f'[sets.home]\nsources = {[str(p) for p in src.values()]!r}\n'
            f'target = "{drive}"\nschedule = "weekly"\n').replace("'", '"')
    code, out = cli(conf, "advise", "home", "--json")
    assert code == 0, out
    data = json_of(out)["home"]
    assert data["schedule"] == "weekly"
    assert {f["folder"]: f["recommend"] for f in data["folders"]}["Docs"] == "daily"
    code, out = cli(conf, "advise")
    assert code == 0 and "Pics" in out and "weekly" in out
