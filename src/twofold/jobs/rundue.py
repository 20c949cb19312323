"""`run-due`: the entry point of timers and of run-on-connect. Picks the scheduled jobs (of
one drive, or one job), waits for the drive's mount, runs those that are due, and writes
one log per run and the job's record in the state folder."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TextIO

from twofold.core.clock import Clock
from twofold.core.errors import TwofoldError, UsageError
from twofold.core.models import Issue
from twofold.core.paths import show
from twofold.jobs.config import Config, ImageJob, Job, SetConfig, drive_of
from twofold.jobs.drives import blkid, device_of, locate, wait_for_mount
from twofold.jobs.live import Cancelled, LiveProgress
from twofold.jobs.state import JobRecord, State
from twofold.jobs.status import Probe, job_status

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
            progress: LiveProgress, log: LogProgress) -> tuple[str, str]:
    from twofold.backup.engine import BackupOptions, backup

    options = BackupOptions(excludes=[*cfg.exclude, *job.exclude],
                            default_excludes=job.default_excludes,
                            allow_mass_delete=job.allow_mass_delete)
    r = backup(job.sources, location, job.name, options, clock, progress)
    s = r.stats
    log.line(f"run {r.run_id} ({r.run_name}): new {s.new} changed {s.changed} "
             f"deleted {s.deleted} moved {s.moved} unchanged {s.unchanged} "
             f"skipped {s.skipped}; {s.bytes_copied:,} bytes copied")
    if any(job.keep):
        from datetime import UTC, datetime

        from twofold.backup.prune import prune
        from twofold.core.retention import Policy

        tz = datetime.now().astimezone().tzinfo or UTC
        p = prune(location, job.name, Policy(*job.keep), tz)
        log.line(f"retention (keep daily {job.keep[0]}, weekly {job.keep[1]}, monthly "
                 f"{job.keep[2]}): pruned runs {', '.join(map(str, p.pruned_runs)) or '-'}, "
                 f"{p.files_removed:,} old versions, {p.bytes_freed:,} bytes freed")
    bad = sum(1 for i in s.issues if i.kind in PARTIAL_KINDS)
    return ("partial", f"{bad} skipped") if bad else ("ok", "")


def _image(job: ImageJob, location: str, clock: Clock, progress: LiveProgress,
           log: LogProgress, state: State, probe: Probe) -> tuple[str, str]:
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
    r = create(job.source, location, name, level, None, False, progress, clock)
    log.line(f"image {r.name}: {r.used_bytes:,} bytes used, "
             f"{r.stored_new_bytes:,} stored new")
    state.save_fingerprint(job.name, probe())
    return "ok", ""


def run_job(job: Job, cfg: Config, location: str, state: State, clock: Clock,
            probe: Probe) -> Outcome:
    """Run one job now, with its log; record the result in the state folder."""
    started = clock.now_ns()
    log = state.new_log(job.name, started)
    stopped: BaseException | None = None
    with log.open("w", encoding="utf-8") as fh:
        progress = LogProgress(fh)
        progress.line(f"{job.kind} job {job.name!r} to {job.target} (at {location})")
        live = LiveProgress(state.root, job.name, job.kind,
                            f"{'Backup' if job.kind == 'backup' else 'Image'} {job.name}",
                            progress)
        try:
            if isinstance(job, SetConfig):
                result, detail = _backup(job, cfg, location, clock, live, progress)
            else:
                result, detail = _image(job, location, clock, live, progress, state, probe)
        except TwofoldError as err:
            result, detail = "failed", err.message
        except OSError as err:
            result, detail = "failed", f"{err.strerror or err}: {err.filename or ''}"
        except (KeyboardInterrupt, Cancelled) as err:
            result, detail, stopped = "cancelled", "stopped by the user", err
        progress.line(f"result: {result}" + (f" ({detail})" if detail else ""))
        live.done(result, detail, str(log))
    rec = state.record(job.name)
    ok_ns = None if result in ("failed", "cancelled") else clock.now_ns()
    state.save(job.name, JobRecord(last_run_ns=started, last_ok_ns=ok_ns or rec.last_ok_ns,
                                   result=result, detail=detail, drive_seen_ns=started,
                                   log=str(log)))
    if stopped is not None:
        raise KeyboardInterrupt from stopped
    return Outcome(job.name, "ran", result, detail, str(log))


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
