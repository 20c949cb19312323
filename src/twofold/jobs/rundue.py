"""`run-due`: the entry point of timers and of run-on-connect. Picks the scheduled jobs (of
one drive, or one job), waits for the drive's mount, runs those that are due, and writes
one log per run and the job's record in the state folder."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twofold.blobs.remote import STORE_DIR
from twofold.chunks.indexfiles import STORE_FILE
from twofold.core.clock import Clock
from twofold.core.errors import TargetError, TwofoldError, UsageError
from twofold.fsinfo.volume import check_drive
from twofold.jobs.config import Config, ImageJob, Job, SetConfig, drive_of
from twofold.jobs.drives import blkid, device_of, locate, wait_for_mount
from twofold.jobs.live import Cancelled, LiveProgress
from twofold.jobs.runlog import LogProgress, RunLog, logged_run, outcome_of
from twofold.jobs.state import State
from twofold.jobs.status import Probe, job_status
from twofold.sets.target import SetDir

if TYPE_CHECKING:
    from twofold.image.repo import Target


@dataclass
class Outcome:
    """What run-due did with one job."""

    job: str
    action: str  # ran, not due, absent
    result: str | None = None  # ok, partial, failed (when it ran)
    detail: str = ""
    log: str | None = None


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
            progress: LiveProgress, log: LogProgress, state: State) -> tuple[str, str]:
    from twofold.backup.engine import BackupOptions, backup

    options = BackupOptions(excludes=[*cfg.exclude, *job.exclude],
                            default_excludes=job.default_excludes,
                            allow_mass_delete=job.allow_mass_delete,
                            seen_drive=state.seen_drive("backup", location, job.name))
    r = backup(job.sources, location, job.name, options, clock, progress)
    if r.drive is not None:
        state.remember_drive("backup", location, job.name, r.drive)
    outcome = outcome_of(r, log)
    if any(job.keep):
        from datetime import UTC, datetime

        from twofold.backup.prune import prune
        from twofold.core.retention import Policy

        tz = datetime.now().astimezone().tzinfo or UTC
        p = prune(location, job.name, Policy(*job.keep), tz)
        log.line(f"retention (keep daily {job.keep[0]}, weekly {job.keep[1]}, monthly "
                 f"{job.keep[2]}): pruned runs {', '.join(map(str, p.pruned_runs)) or '-'}, "
                 f"{p.files_removed:,} old versions, {p.bytes_freed:,} bytes freed")
    return outcome


def env_unlocked(location: str) -> Target:
    """The image store at `location`; an encrypted one unlocked with TWOFOLD_PASSPHRASE
    from the timer's environment (without it, the engine refuses it, naming the variable)."""
    from twofold.blobs.remote import open_target
    from twofold.vault.objects import PASSPHRASE_ENV, key_names, unlock

    secret = os.environ.get(PASSPHRASE_ENV)
    if not secret or ("://" not in location and not os.path.isdir(location)):
        return location
    objects = open_target(location)
    return unlock(objects, secret.encode()) if key_names(objects) else location


def _image(job: ImageJob, location: str, clock: Clock, progress: LiveProgress,
           log: LogProgress, state: State, probe: Probe) -> tuple[str, str]:
    from twofold.image.create import LEVELS, create
    from twofold.image.manage import list_images

    store = env_unlocked(location)
    text = job.compression.lower()
    level = LEVELS.get(text) or (int(text) if text.isdigit() else 0)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock.now_ns() // 10**9))
    name = base = re.sub(r"[^A-Za-z0-9._+-]", "_", f"{job.name}-{stamp}")
    try:
        taken = {i.name for i in list_images(store)}
    except TwofoldError:  # no store there yet
        taken = set()
    n = 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    r = create(job.source, store, name, level, None, False, progress, clock,
               state.seen_drive("image", location))
    if r.drive is not None:
        state.remember_drive("image", location, "", r.drive)
    log.line(f"image {r.name}: {r.used_bytes:,} bytes used, "
             f"{r.stored_new_bytes:,} stored new")
    state.save_fingerprint(job.name, probe())
    return "ok", ""


def run_job(job: Job, cfg: Config, location: str, state: State, clock: Clock,
            probe: Probe) -> Outcome:
    """Run one job now, with its log; record the result in the state folder."""
    run: RunLog | None = None
    stopped: BaseException | None = None
    try:
        with logged_run(state, job.name, job.kind, str(job.target), location, clock) as run:
            live = LiveProgress(state.root, job.name, job.kind,
                                f"{'Backup' if job.kind == 'backup' else 'Image'} {job.name}",
                                run.progress)
            try:
                if isinstance(job, SetConfig):
                    run.result, run.detail = _backup(job, cfg, location, clock, live,
                                                     run.progress, state)
                else:
                    run.result, run.detail = _image(job, location, clock, live, run.progress,
                                                    state, probe)
            except (KeyboardInterrupt, Cancelled) as err:
                run.result, run.detail, stopped = "cancelled", "stopped by the user", err
            except TwofoldError as err:
                run.result, run.detail = "failed", err.message
            except OSError as err:
                run.result, run.detail = "failed", f"{err.strerror or err}: {err.filename or ''}"
            live.done(run.result, run.detail, str(run.path))
    except (TwofoldError, OSError):
        pass  # logged and recorded
    assert run is not None
    if stopped is not None:
        raise KeyboardInterrupt from stopped
    return Outcome(job.name, "ran", run.result, run.detail, str(run.path))


def drive_absent(job: Job, location: str, state: State) -> str | None:
    """Why the folder of a plain-path target is not the job's drive now (the empty folder an
    unplugged drive left), or None: a timer finds the drive absent, not the job failing."""
    if isinstance(job, SetConfig):
        found = SetDir(location, job.name).exists()
        seen = state.seen_drive("backup", location, job.name)
        what = f"the backup set {job.name!r}"
    else:
        found = os.path.exists(os.path.join(location, STORE_DIR, STORE_FILE))
        seen, what = state.seen_drive("image", location), "the image store"
    try:
        check_drive(location, found, seen, what)
    except TargetError as err:
        return err.message
    return None


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
        if (gone := drive_absent(j, location, state)) is not None:
            outcomes.append(Outcome(j.name, "absent", detail=gone))
            continue
        verdict = job_status(j, state, clock, probe).verdict
        if not (force or verdict.due):
            outcomes.append(Outcome(j.name, "not due", detail=verdict.reason))
            continue
        outcomes.append(run_job(j, cfg, location, state, clock, probe))
    return outcomes
