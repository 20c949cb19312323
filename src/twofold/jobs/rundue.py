"""`run-due`: the entry point of timers and of run-on-connect. Picks the scheduled jobs (of
one drive, or one job), waits for the drive's mount, runs those that are due, and writes
one log per run and the job's record in the state folder."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from twofold.core.clock import Clock
from twofold.core.errors import TwofoldError, UsageError
from twofold.core.models import Issue
from twofold.core.paths import show
from twofold.jobs.config import Config, ImageJob, Job, SetConfig, drive_of
from twofold.jobs.drives import blkid, device_of, locate, wait_for_mount
from twofold.jobs.state import JobRecord, State
from twofold.jobs.status import Probe, job_status

if TYPE_CHECKING:
    from twofold.backup.engine import BackupResult

PARTIAL_KINDS = {"skipped", "unstable", "failed"}


@dataclass
class Outcome:
    """What run-due did with one job."""

    job: str
    action: str  # ran, not due, absent
    result: str | None = None  # ok, partial, failed (when it ran)
    detail: str = ""
    log: str | None = None


class LogProgress:
    """A Progress that writes phases and issues to a run's log file."""

    def __init__(self, fh: TextIO) -> None:
        self.fh = fh

    def line(self, text: str) -> None:
        """One timestamped line."""
        self.fh.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.fh.flush()

    def phase(self, name: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        """Log the phase and its totals."""
        totals = [f"{n:,} {u}" for n, u in ((total_files, "files"), (total_bytes, "bytes"))
                  if n is not None]
        self.line(f"{name}" + (f" ({', '.join(totals)})" if totals else ""))

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        """Not logged: too many."""

    def issue(self, issue: Issue) -> None:
        """Log the item."""
        self.line(f"  {issue.kind}: {show(issue.path)}: {issue.message}")

    def finish(self) -> None:
        """Nothing to close; the caller owns the file."""


def drive_matches(job: Job, uuid: str) -> bool:
    """True when `job`'s target is the file system with this UUID (or its label)."""
    drive = drive_of(job.target)
    if drive is None:
        return False
    kind, value = drive
    if kind == "uuid":
        return value.lower() == uuid.lower()
    device = device_of("uuid", uuid)
    return device is not None and blkid(device).get("LABEL") == value


def select(cfg: Config, drive: str | None, job: str | None) -> list[Job]:
    """The scheduled jobs of a drive, the named job, or every scheduled job."""
    if job is not None:
        found = cfg.job(job)
        if found is None:
            raise UsageError(f"no job named {job!r} in {cfg.path}",
                             f"jobs: {', '.join(j.name for j in cfg.jobs()) or 'none'}")
        return [found]
    jobs = [j for j in cfg.jobs() if j.schedule is not None]
    return [j for j in jobs if drive is None or drive_matches(j, drive)]


def _backup(job: SetConfig, cfg: Config, location: str, clock: Clock,
            progress: LogProgress, state: State) -> tuple[str, str]:
    from twofold.backup.engine import BackupOptions, backup

    options = BackupOptions(excludes=[*cfg.exclude, *job.exclude],
                            default_excludes=job.default_excludes,
                            allow_mass_delete=job.allow_mass_delete,
                            seen_drive=state.seen_drive("backup", location, job.name))
    r = backup(job.sources, location, job.name, options, clock, progress)
    if r.drive is not None:
        state.remember_drive("backup", location, job.name, r.drive)
    return outcome_of(r, progress)


def outcome_of(r: BackupResult, log: LogProgress | None = None) -> tuple[str, str]:
    """("ok", "") or ("partial", "N skipped") for a backup's result; logs its counts."""
    s = r.stats
    if log is not None:
        log.line(f"run {r.run_id} ({r.run_name}): new {s.new} changed {s.changed} "
                 f"deleted {s.deleted} moved {s.moved} unchanged {s.unchanged} "
                 f"skipped {s.skipped}; {s.bytes_copied:,} bytes copied")
    bad = sum(1 for i in s.issues if i.kind in PARTIAL_KINDS)
    return ("partial", f"{bad} skipped") if bad else ("ok", "")


def _image(job: ImageJob, location: str, clock: Clock, progress: LogProgress,
           state: State, probe: Probe) -> tuple[str, str]:
    from twofold.image.create import LEVELS, create
    from twofold.image.manage import list_images

    text = job.compression.lower()
    level = LEVELS.get(text) or (int(text) if text.isdigit() else 0)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock.now_ns() // 10**9))
    name = base = re.sub(r"[^A-Za-z0-9._+-]", "_", f"{job.name}-{stamp}")
    try:
        taken = {i.name for i in list_images(location)}
    except TwofoldError:  # no store there yet
        taken = set()
    n = 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    r = create(job.source, location, name, level, None, False, progress, clock,
               state.seen_drive("image", location))
    if r.drive is not None:
        state.remember_drive("image", location, "", r.drive)
    progress.line(f"image {r.name}: {r.used_bytes:,} bytes used, "
                  f"{r.stored_new_bytes:,} stored new")
    state.save_fingerprint(job.name, probe())
    return "ok", ""


@dataclass
class RunLog:
    """A run being logged: its log's progress sink, and how it ended."""

    progress: LogProgress
    path: Path
    result: str = "ok"
    detail: str = ""


@contextmanager
def logged_run(state: State, name: str, kind: str, target: str, location: str,
               clock: Clock) -> Iterator[RunLog]:
    """Log a run of job `name` (started by a timer, a drive or by hand) and record its
    result in the state folder; an error is logged, recorded, and raised on."""
    started = clock.now_ns()
    log = state.new_log(name, started)
    with log.open("w", encoding="utf-8") as fh:
        run = RunLog(LogProgress(fh), log)
        run.progress.line(f"{kind} job {name!r} to {target} (at {location})")
        try:
            yield run
        except TwofoldError as err:
            run.result, run.detail = "failed", err.message
            raise
        except OSError as err:
            run.result, run.detail = "failed", f"{err.strerror or err}: {err.filename or ''}"
            raise
        except BaseException:
            run.result, run.detail = "failed", "interrupted"
            raise
        finally:
            run.progress.line(f"result: {run.result}"
                              + (f" ({run.detail})" if run.detail else ""))
            rec = state.record(name)
            ok_ns = None if run.result == "failed" else clock.now_ns()
            state.save(name, JobRecord(last_run_ns=started,
                                       last_ok_ns=ok_ns or rec.last_ok_ns,
                                       result=run.result, detail=run.detail,
                                       drive_seen_ns=started, log=str(log)))


def run_job(job: Job, cfg: Config, location: str, state: State, clock: Clock,
            probe: Probe) -> Outcome:
    """Run one job now, with its log; record the result in the state folder."""
    run: RunLog | None = None
    try:
        with logged_run(state, job.name, job.kind, str(job.target), location, clock) as run:
            if isinstance(job, SetConfig):
                run.result, run.detail = _backup(job, cfg, location, clock, run.progress,
                                                 state)
            else:
                run.result, run.detail = _image(job, location, clock, run.progress, state,
                                                probe)
    except (TwofoldError, OSError):
        pass  # logged and recorded
    assert run is not None
    return Outcome(job.name, "ran", run.result, run.detail, str(run.path))


def run_due(cfg: Config, state: State, clock: Clock, probe: Probe, drive: str | None = None,
            job: str | None = None, wait: float = 0, force: bool = False) -> list[Outcome]:
    """Run every selected job that is due (all of them with `force`)."""
    outcomes = []
    for j in select(cfg, drive, job):
        if j.target is None:
            outcomes.append(Outcome(j.name, "absent", detail="no target in the config"))
            continue
        location = locate(j.target) or (wait_for_mount(j.target, wait) if wait else None)
        if location is None:
            outcomes.append(Outcome(j.name, "absent", detail=f"{j.target} is not connected"))
            continue
        verdict = job_status(j, state, clock, probe).verdict
        if not (force or verdict.due):
            outcomes.append(Outcome(j.name, "not due", detail=verdict.reason))
            continue
        outcomes.append(run_job(j, cfg, location, state, clock, probe))
    return outcomes
