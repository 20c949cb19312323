"""`twofold status`: real backups on a folder target, the state folder, exit code 4, and
image jobs made due by a changed package list (injected clock and OS probe)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.jobs.conftest import Cli, json_of
from twofold.core.schedule import DAY
from twofold.jobs.config import parse
from twofold.jobs.state import JobRecord, State
from twofold.jobs.status import gather

NOW = 1_790_000_000 * 10**9


class FixedClock:
    """A clock that says `now`."""

    def __init__(self, now: int) -> None:
        self.now = now

    def now_ns(self) -> int:
        return self.now


def config(tmp_path: Path, schedule: str = "daily") -> str:
    src = tmp_path / "Docs"
    src.mkdir(exist_ok=True)
    (src / "a.txt").write_text("alpha")
    (tmp_path / "drive").mkdir(exist_ok=True)
    return (f'[sets.docs]\nsources = ["{src}"]\ntarget = "{tmp_path / "drive"}"\n'
            f'schedule = "{schedule}"\n\n[sets.later]\nsources = ["{src}"]\n'
            f'target = "{tmp_path / "gone"}"\nschedule = "weekly"\n')


def test_status_after_a_real_backup(cli: Cli, tmp_path: Path, state: Path) -> None:
    text = config(tmp_path)
    code, out = cli(text, "status", "--json", "docs")
    assert code == 4, out  # never completed
    assert json_of(out)["jobs"][0]["reason"] == "never completed"
    code, out = cli(text, "backup", "docs")
    assert code == 0, out
    code, out = cli(text, "status", "--json", "docs")
    job = json_of(out)["jobs"][0]
    assert code == 0 and job["state"] == "current" and job["connected_at"], out
    assert job["drive_seen_ns"]  # status noticed the connected target
    code, out = cli(text, "status")
    assert code == 4 and "docs" in out and "later" in out and "never" in out


def test_failing_job_is_reported_with_its_reason(cli: Cli, tmp_path: Path,
                                                 state: Path) -> None:
    State(state).save("later", JobRecord(last_run_ns=NOW, result="failed",
                                          detail="the drive is full"))
    code, out = cli(config(tmp_path), "status", "--json", "later")
    job = json_of(out)["jobs"][0]
    assert code == 4 and job["state"] == "failing" and "the drive is full" in job["reason"]


def test_unknown_job_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    code, out = cli(config(tmp_path), "status", "nope")
    assert code == 2 and "no job named 'nope'" in out


IMAGES = """
[images.system]
source = "/dev/sda"
target = "/nonexistent/drive"
"""


def fp(packages: dict[str, str]) -> dict[str, Any]:
    return {"packages": packages, "kernel": "6.1.0-1", "boot": {}}


def test_image_due_after_os_change_or_age(tmp_path: Path) -> None:
    cfg = parse(IMAGES, tmp_path / "c.toml")
    st = State(tmp_path / "state")
    image_day = NOW - 10 * DAY
    st.save("system", JobRecord(last_run_ns=image_day, last_ok_ns=image_day, result="ok"))
    old = {f"pkg{i}": "1.0" for i in range(40)}
    st.save_fingerprint("system", fp(old))

    def verdict(now: int, packages: dict[str, str]) -> tuple[str, str]:
        [s] = gather(cfg, st, FixedClock(now), lambda: fp(packages))
        return s.verdict.state, s.verdict.reason

    assert verdict(NOW, old) == ("current", "last successful run 10 days ago")
    new = {**old, "pkg0": "1.1", "pkg1": "2.0", "extra": "1"}
    del new["pkg39"]
    state, reason = verdict(NOW, new)
    assert state == "due" and reason.startswith("4 packages changed since the image of ")
    assert verdict(NOW + 70 * DAY, old)[0] == "due"  # 80 of 90 days
    assert verdict(NOW + 140 * DAY, old)[0] == "overdue"


def test_overdue_notifies_the_desktop(cli: Cli, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sent = tmp_path / "sent"
    tool = bin_dir / "notify-send"
    tool.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {sent}\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":0")
    code, _ = cli(config(tmp_path), "status", "--no-notify")
    assert code == 4 and not sent.exists()
    code, _ = cli(config(tmp_path), "status")
    assert code == 4 and "later: overdue, never completed" in sent.read_text()
