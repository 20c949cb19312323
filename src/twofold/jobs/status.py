"""Each job's status: its last success (state folder, and the drive's own records when it
is connected), its last result, the drive last seen, and the verdict of core/due.py."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twofold.core.clock import Clock
from twofold.core.due import JobFacts, Verdict, judge
from twofold.core.errors import TwofoldError
from twofold.core.oschange import change_reason
from twofold.core.schedule import DAY, Schedule
from twofold.jobs.config import Config, ImageJob, Job, SetConfig
from twofold.jobs.drives import locate
from twofold.jobs.state import State

Probe = Callable[[], dict[str, Any]]


@dataclass
class JobStatus:
    """One line of `twofold status`."""

    name: str
    kind: str  # backup or image
    schedule: str | None
    target: str | None
    location: str | None  # where the target is now; None when not connected
    last_ok_ns: int | None
    last_result: str | None
    detail: str
    drive_seen_ns: int | None
    verdict: Verdict
    last_drill: str | None = None  # of the job's newest image: "passed, DATE" (image drill)

    def as_dict(self) -> dict[str, object]:
        """For --json."""
        return {"job": self.name, "kind": self.kind, "schedule": self.schedule,
                "target": self.target, "connected_at": self.location,
                "last_ok_ns": self.last_ok_ns, "last_result": self.last_result,
                "detail": self.detail, "drive_seen_ns": self.drive_seen_ns,
                "state": self.verdict.state, "reason": self.verdict.reason,
                "attention": self.verdict.attention, "last_drill": self.last_drill}


@functools.lru_cache(maxsize=256)
def calendar_period(expression: str) -> int:
    """The period of a systemd calendar expression: the gap between its next two
    elapses, as systemd computes them; a day when systemd cannot tell. Kept per process:
    a long-lived one (the panel) would otherwise ask systemd for every job at each look
    (20 jobs: 0.4 s a page)."""
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "calendar", "--iterations=2", expression],
                           capture_output=True, text=True, check=False, timeout=30,
                           env={**os.environ, "TZ": "UTC", "LC_ALL": "C"})
        stamps = [line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
                  if "Next elapse" in line or "Iter. #2" in line]
        if r.returncode == 0 and len(stamps) == 2:
            try:
                a, b = (datetime.strptime(s.rsplit(" ", 1)[0], "%a %Y-%m-%d %H:%M:%S")
                        for s in stamps)
                return max(int((b - a).total_seconds()) * 10**9, 60 * 10**9)
            except ValueError:
                pass
    return DAY


def period_of(schedule: Schedule | None) -> int | None:
    """The period of a schedule in ns; None for a job run only by hand."""
    if schedule is None:
        return None
    return schedule.period_ns if schedule.period_ns is not None else \
        calendar_period(schedule.calendar)


def _backup_ok_on_drive(job: SetConfig, location: str) -> int | None:
    from twofold.backup.inspect import list_runs

    try:
        runs = list_runs(location, job.name)
    except TwofoldError:
        return None
    done = [r.finished_ns for r in runs if r.state == "complete" and r.finished_ns]
    return max(done, default=None)


def latest_image(job: ImageJob, location: str) -> tuple[int | None, str | None]:
    """When the newest image this job made (or of its source) was created, and its last
    drill ("passed, DATE"; None when never drilled)."""
    from twofold.image.manage import list_images

    try:
        images = list_images(location)
    except TwofoldError:
        return None, None
    mine = [i for i in images if i.name.startswith(f"{job.name}-") or i.source == job.source]
    if not mine:
        return None, None
    newest = max(mine, key=lambda i: i.created_ns)
    return newest.created_ns, newest.last_drill or None


def _latest(*values: int | None) -> int | None:
    return max((v for v in values if v is not None), default=None)


def job_status(job: Job, state: State, clock: Clock, probe: Probe) -> JobStatus:
    """The status of one job now."""
    now = clock.now_ns()
    rec = state.record(job.name)
    location = locate(job.target) if job.target else None
    change = None
    drill: str | None = None
    if location is not None:
        state.saw_drive(job.name, now)
        rec.drive_seen_ns = now
    if isinstance(job, SetConfig):
        on_drive = _backup_ok_on_drive(job, location) if location else None
        last_ok = _latest(rec.last_ok_ns, on_drive)
    else:
        image_ns, drill = latest_image(job, location) if location else (None, None)
        last_ok = _latest(rec.last_ok_ns, image_ns)
        if job.on_change and last_ok is not None:
            change = change_reason(state.fingerprint(job.name), probe(), last_ok)
    facts = JobFacts(period_ns=period_of(job.schedule), last_ok_ns=last_ok,
                     last_result=rec.result, last_detail=rec.detail, change_reason=change,
                     schedule=job.schedule.text if job.schedule else "")
    return JobStatus(job.name, job.kind, job.schedule.text if job.schedule else None,
                     job.target, location, last_ok, rec.result, rec.detail,
                     rec.drive_seen_ns, judge(facts, now), drill)


def gather(cfg: Config, state: State, clock: Clock, probe: Probe,
           names: list[str] | None = None) -> list[JobStatus]:
    """The status of every job (or of the named ones)."""
    jobs = [j for j in cfg.jobs() if names is None or j.name in names]
    return [job_status(j, state, clock, probe) for j in jobs]


def desktop_present() -> bool:
    """A graphical session to notify, and notify-send to do it."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and \
        shutil.which("notify-send") is not None


def notify(statuses: list[JobStatus]) -> bool:
    """Tell the desktop which jobs are overdue or failing; True when a notice was sent."""
    late = [s for s in statuses if s.verdict.attention]
    if not late or not desktop_present():
        return False
    body = "\n".join(f"{s.name}: {s.verdict.state}, {s.verdict.reason}" for s in late)
    r = subprocess.run(["notify-send", "--app-name=twofold", "--urgency=critical",
                        "twofold: backups need attention", body],
                       capture_output=True, check=False, timeout=30)
    return r.returncode == 0
