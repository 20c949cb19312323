"""`twofold backup`: back up folders, or a set from the config."""

from __future__ import annotations

from typing import Annotated

import typer

from twofold.backup.engine import BackupOptions, BackupResult, backup
from twofold.cli.common import (
    AllowSystemDisk,
    NewDrive,
    config_of,
    err,
    handles_errors,
    issue_dict,
    out,
    print_issues,
    print_json,
    profile_json,
    size,
)
from twofold.core.errors import ExitCode, UsageError
from twofold.core.progress import NullProgress, Progress, TeeProgress
from twofold.core.text import plural
from twofold.jobs.clock import SystemClock
from twofold.jobs.config import SetConfig
from twofold.jobs.drives import resolve_target
from twofold.jobs.runlog import logged_run, outcome_of
from twofold.jobs.state import State


def exit_code_of(result: BackupResult) -> int:
    """3 when some items were skipped or unstable, else 0."""
    return int(ExitCode.PARTIAL if outcome_of(result)[0] == "partial" else ExitCode.OK)


@handles_errors
def backup_command(
    ctx: typer.Context,
    sources: Annotated[list[str] | None, typer.Argument(
        help="Folders to back up, or the name of a set in the config.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Target folder (the backup drive).")]
    = None,
    set_name: Annotated[str | None, typer.Option(
        "--set", help="Name of the backup set (with --to: default 'default'; without it: "
        "a set in the config).", show_default=False)] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", help="Gitignore-style pattern to leave out (repeatable).",
        show_default=False)] = None,
    no_default_excludes: Annotated[bool, typer.Option(
        "--no-default-excludes", help="Also back up caches and trash.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")]
    = False,
    allow_mass_delete: Annotated[bool, typer.Option(
        "--allow-mass-delete",
        help="Allow a run that moves more than half of the backup to versions/.")] = False,
    allow_system_disk: AllowSystemDisk = False,
    new_drive: NewDrive = False,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, max=64,
        help="Files copied in parallel (0: two per CPU, at least 2, at most 8).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
    = False,
) -> None:
    """Back up SOURCE... to --to TARGET, or run the set NAME from the config."""
    paths = list(sources or [])
    cfg = config_of(ctx)
    options = BackupOptions(excludes=[*cfg.exclude, *(exclude or [])],
                            default_excludes=not no_default_excludes, dry_run=dry_run,
                            allow_mass_delete=allow_mass_delete, workers=workers,
                            allow_system_disk=allow_system_disk)
    job: SetConfig | None = None
    if to is None:
        if set_name is not None and paths:
            raise UsageError("give either a set name or --set, not both",
                             f"twofold backup --set {set_name}")
        name = set_name or (paths[0] if len(paths) == 1 else "default" if not paths
                            else None)
        if name is None or name not in cfg.sets:
            known = ", ".join(cfg.sets) or "none"
            raise UsageError(
                "give the target with --to TARGET, or the name of a set in the config"
                + (f" (no set named {name!r} in {cfg.path})" if name else ""),
                f"sets in the config: {known}; `twofold init` writes a config")
        job = cfg.sets[name]
        if not job.sources:
            raise UsageError(f"set {name!r} in {cfg.path} lists no source folder",
                             'add e.g. sources = ["~/Documents"] to it')
        if job.target is None:
            raise UsageError(f"set {name!r} in {cfg.path} has no target",
                             "add target = \"/media/you/BACKUP\" to it, or pass --to")
        paths, to = job.sources, resolve_target(job.target)
        options.excludes = [*options.excludes, *job.exclude]
        options.default_excludes = options.default_excludes and job.default_excludes
        options.allow_mass_delete = options.allow_mass_delete or job.allow_mass_delete
    set_name = job.name if job else set_name or "default"
    state = State()
    if not new_drive:
        options.seen_drive = state.seen_drive("backup", to, set_name)
    if as_json:
        progress: Progress = NullProgress()
    else:  # Rich's progress bars load only here: --json draws none
        from twofold.cli.render import RichProgress

        progress = RichProgress(err)
    clock = SystemClock()
    try:
        if job is None or dry_run:
            result = backup(paths, to, set_name, options, clock, progress)
        else:  # a set of the config: logged like a timer's run (`twofold log`)
            with logged_run(state, job.name, "backup", str(job.target), to, clock) as run:
                result = backup(paths, to, set_name, options, clock,
                                TeeProgress(progress, run.progress))
                run.result, run.detail = outcome_of(result, run.progress)
    finally:
        progress.finish()
    if result.drive is not None:
        state.remember_drive("backup", to, set_name, result.drive)
    code = exit_code_of(result)
    if as_json:
        print_json({"set": result.set_name, "target": result.target, "run_id": result.run_id,
                    "run": result.run_name, "dry_run": result.dry_run,
                    "stats": result.stats.as_dict(), "warnings": result.warnings,
                    "target_drive": profile_json(result.profile),
                    "issues": [issue_dict(i) for i in result.stats.issues],
                    "exit_code": code})
        raise typer.Exit(code)
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    _summary(result)
    raise typer.Exit(code)


def _summary(result: BackupResult) -> None:
    s = result.stats
    head = "Dry run, nothing written" if result.dry_run else \
        f"Run {result.run_id} ({result.run_name}) of set {result.set_name!r} complete"
    out.print(f"[bold]{head}[/]")
    out.print(f"  new {s.new:,}   changed {s.changed:,}   metadata {s.metadata:,}   "
              f"deleted {s.deleted:,}   moved {s.moved:,}   unchanged {s.unchanged:,}   "
              f"skipped {s.skipped:,}")
    copied = "to copy" if result.dry_run else "copied"
    out.print(f"  {size(s.bytes_copied)} {copied}; {plural(s.files_total, 'file')}, "
              f"{size(s.bytes_total)} in the backup"
              + ("" if result.dry_run else f"; {s.seconds:.1f} s"))
    if s.healed:
        out.print(f"  healed {s.healed:,} copies (damaged or missing, copied again)")
    print_issues(s.issues, "Not copied or needing attention")
