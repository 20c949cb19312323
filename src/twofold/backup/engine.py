"""Run one backup of a set: check, recover an interrupted run, plan, apply, finish."""

from __future__ import annotations

import os
import socket
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

from twofold.backup.apply import Applier
from twofold.backup.fits import ITEM_ERRNOS
from twofold.backup.heal import heal_copies
from twofold.backup.ops import apply_op, set_dir_times
from twofold.backup.plan import Plan, make_plan
from twofold.backup.planproc import Planned
from twofold.backup.safety import (
    check_mass_delete,
    check_overlap,
    check_space,
    resolve_sources,
    resolve_target,
)
from twofold.core.clock import Clock
from twofold.core.diff import Action
from twofold.core.errors import TargetError
from twofold.core.models import RunStats
from twofold.core.names import TargetProfile
from twofold.core.paths import parent_of, unsafe
from twofold.core.progress import Progress
from twofold.fsinfo.disk import syncfs
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Source
from twofold.fsinfo.volume import DriveGuard, DriveId, check_drive
from twofold.sets.catalog import Catalog
from twofold.sets.target import SetDir, target_failure


@dataclass
class BackupOptions:
    """How to run a backup."""

    excludes: list[str] = field(default_factory=list)
    default_excludes: bool = True
    dry_run: bool = False
    allow_mass_delete: bool = False
    workers: int = 0  # copy workers; 0: COPY_WORKERS
    seen_drive: DriveId | None = None  # the drive this computer last ran the set on
    allow_system_disk: bool = False  # a first run into an empty mount point


@dataclass
class BackupResult:
    """What a run did."""

    set_name: str
    target: str
    run_id: int | None
    run_name: str | None
    stats: RunStats
    warnings: list[str]
    dry_run: bool
    profile: TargetProfile | None = None  # what the target can hold (not on a dry run)
    drive: DriveId | None = None  # the drive the set is on (not on a dry run)


def run_name_for(now_ns: int, taken: set[str]) -> str:
    """A versions/ folder name for a run started at `now_ns`: UTC time, no colons."""
    base = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(now_ns // 1_000_000_000))
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def recover(sd: SetDir, catalog: Catalog) -> None:
    """Finish the renames of an interrupted run, restore folder times, mark it interrupted."""
    names = catalog.run_names()
    pending = catalog.pending()
    dropped: list[tuple[int, bytes]] = []
    for run_id, op in pending:
        if unsafe(op.path) or (op.link_to is not None and unsafe(op.link_to)):
            dropped.append((run_id, op.path))  # never carried out: a crafted catalog's,
            continue  # or a path too long for any drive
        try:
            apply_op(sd, names[run_id], op, catalog.open_row)
        except OSError as err:
            if err.errno not in ITEM_ERRNOS:
                raise target_failure(err, op.path) from err
            dropped.append((run_id, op.path))  # its row is closed: the next plan sees it
    killed = [run for run in catalog.runs() if run.state == "running"]
    for run in killed:
        changed = catalog.changed_by(run.id)
        set_dir_times(sd, changed | {parent_of(p) for p in changed}, {}, catalog.open_row)
    if pending or killed:
        syncfs(sd.current)
    with catalog.transaction():
        drop_rows(catalog, dropped)
        if pending:
            catalog.clear_pending(max(r for r, _ in pending))
        for run in killed:
            catalog.set_run_state(run.id, "interrupted")
    sd.clean_tmp()


def drop_rows(catalog: Catalog, dropped: list[tuple[int, bytes]]) -> None:
    """Close the open rows of paths whose operation could not be done for the name's sake
    (inside a transaction), so the next plan takes them as new and skips them by name."""
    for run_id, path in dropped:  # (open_row only reads: a crafted path is harmless here)
        row = catalog.open_row(path)
        if row is not None:
            catalog.close_rows([(row.id, run_id, False)])


def heal_listed(sd: SetDir, catalog: Catalog, srcs: list[Source], run_name: str,
                stats: RunStats) -> bool:
    """Heal the copies verify found damaged or missing (backup/heal.py); whether any was
    tried (and so something may have been written)."""
    healed = heal_copies(sd, catalog, {s.name: s.path for s in srcs}, run_name)
    stats.healed = healed.healed
    stats.issues.extend(healed.left)
    return bool(healed.healed or healed.left)


def _stats_from_plan(plan: Plan) -> RunStats:
    c = plan.counts
    moved = len(plan.moved_to)
    return RunStats(new=c[Action.NEW] - moved, changed=c[Action.CHANGED] + c[Action.CHECK],
                    metadata=c[Action.META], deleted=c[Action.DELETED] - moved, moved=moved,
                    unchanged=c[Action.UNCHANGED], skipped=c[Action.SKIPPED],
                    bytes_copied=plan.copy_bytes, bytes_total=plan.bytes_total,
                    files_total=plan.files_total, issues=list(plan.issues))


def _check_space(sd: SetDir, plan: Plan, catalog: Catalog | None) -> None:
    """TargetFullError when the plan's copies cannot fit on the drive."""
    where = sd.root if os.path.isdir(sd.root) else sd.target
    check_space(where, plan.copy_bytes, plan.copy_files,
                catalog.versions_bytes if catalog is not None else lambda: 0,
                f"twofold prune --from {os.fsdecode(sd.target)} --set {sd.name} "
                "--keep-daily 7 --keep-weekly 4")


def backup(sources: list[str], target: str, set_name: str, options: BackupOptions,
           clock: Clock, progress: Progress) -> BackupResult:
    """Back up `sources` into set `set_name` on `target`."""
    started = clock.now_ns()
    srcs = resolve_sources(sources)
    real_target = resolve_target(target)
    warnings = check_overlap(srcs, real_target)
    sd = SetDir(real_target, set_name)
    Excluder(options.excludes, options.default_excludes)  # a bad pattern: before any write
    check_drive(real_target, sd.exists(), options.seen_drive, f"the backup set {set_name!r}",
                options.allow_system_disk)
    result = BackupResult(set_name, real_target, None, None, RunStats(), warnings,
                          options.dry_run)
    if options.dry_run:
        with Catalog(os.fsdecode(sd.catalog)) if sd.exists() else nullcontext() as catalog:
            plan = make_plan(Planned(srcs, options.excludes, options.default_excludes,
                                          catalog), progress)
            try:
                _check_space(sd, plan, catalog)
            finally:
                plan.close()
        result.stats = _stats_from_plan(plan)
        progress.finish()
        return result
    try:
        sd.create()
    except OSError as err:
        raise target_failure(err, os.fsdecode(sd.root)) from err
    result.drive = sd.mark_drive()
    guard = DriveGuard(sd.root, result.drive, target)
    try:
        with sd.lock(), sd.open_catalog(create=True) as catalog:
            result.profile = sd.namer.profile
            recover(sd, catalog)
            plan = make_plan(Planned(srcs, options.excludes, options.default_excludes,
                                          catalog), progress)
            try:
                _check_space(sd, plan, catalog)
                if plan.moves:  # counting current/ reads every open row: only when needed
                    check_mass_delete(plan.moves, catalog.count_current_files(),
                                      options.allow_mass_delete)
                name = run_name_for(started, set(catalog.run_names().values()))
                run_id = catalog.add_run(name, started, {
                    "sources": [os.fsdecode(s.path) for s in srcs],
                    "excludes": options.excludes,
                    "default_excludes": options.default_excludes,
                    "same_disk": bool(warnings),  # check_overlap warns of nothing else
                }, socket.gethostname())
                result.run_id, result.run_name = run_id, name
                stats = RunStats(unchanged=plan.counts[Action.UNCHANGED],
                                 files_total=plan.files_total, bytes_total=plan.bytes_total,
                                 skipped=plan.counts[Action.SKIPPED], issues=list(plan.issues))
                applier = Applier(sd, catalog, run_id, name,
                                  {s.name: s.path for s in srcs}, progress, stats,
                                  workers=options.workers, moved_from=plan.moved_from,
                                  moved_to=plan.moved_to, guard=guard)
                applier.run(plan.changes(), plan.copy_files, plan.copy_bytes)
                healed = heal_listed(sd, catalog, srcs, name, stats)
            finally:
                plan.close()
            if applier.wrote or healed:  # else only the catalog changed, which SQLite
                try:                     # flushes at each commit
                    syncfs(sd.current)
                except OSError as err:
                    raise target_failure(err, os.fsdecode(sd.current)) from err
            stats.seconds = (clock.now_ns() - started) / 1e9
            guard.check(sd.drive)
            with catalog.transaction():
                catalog.clear_pending(run_id)
                catalog.set_run_state(run_id, "complete", clock.now_ns(), stats.as_dict())
            sd.tidy_tmp()
            result.stats = stats
    except TargetError:  # a write that failed because the drive went away is said as
        guard.check()    # the drive gone
        raise
    progress.finish()
    return result
