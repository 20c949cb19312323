"""`twofold backup`: back up folders, or a set from the config."""

from __future__ import annotations

from typing import Annotated

import typer

from twofold.backup.engine import BackupOptions, BackupResult, backup
from twofold.cli.common import (
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
from twofold.cli.render import RichProgress
from twofold.core.errors import ExitCode, UsageError
from twofold.core.progress import NullProgress, Progress
from twofold.core.text import plural
from twofold.jobs.clock import SystemClock
from twofold.jobs.drives import resolve_target

PARTIAL_KINDS = {"skipped", "unstable", "failed"}


def exit_code_of(result: BackupResult) -> int:
    """3 when some items were skipped or unstable, else 0."""
    if any(i.kind in PARTIAL_KINDS for i in result.stats.issues):
        return int(ExitCode.PARTIAL)
    return int(ExitCode.OK)


@handles_errors
def backup_command(
    ctx: typer.Context,
    sources: Annotated[list[str] | None, typer.Argument(
        help="Folders to back up, or the name of a set in the config.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Target folder (the backup drive).")]
    = None,
    set_name: Annotated[str, typer.Option("--set", help="Name of the backup set.")]
    = "default",
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", help="Gitignore-style pattern to leave out (repeatable).")] = None,
    no_default_excludes: Annotated[bool, typer.Option(
        "--no-default-excludes", help="Also back up caches and trash.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")]
    = False,
    allow_mass_delete: Annotated[bool, typer.Option(
        "--allow-mass-delete",
        help="Allow a run that moves more than half of the backup to versions/.")] = False,
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
                            allow_mass_delete=allow_mass_delete, workers=workers)
    if to is None:
        name = paths[0] if len(paths) == 1 else "default" if not paths else None
        if name is None or name not in cfg.sets:
            known = ", ".join(cfg.sets) or "none"
            raise UsageError(
                "give the target with --to TARGET, or the name of a set in the config"
                + (f" (no set named {name!r} in {cfg.path})" if name else ""),
                f"sets in the config: {known}; `twofold init` writes a config")
        conf = cfg.sets[name]
        if not conf.sources:
            raise UsageError(f"set {name!r} in {cfg.path} lists no source folder",
                             'add e.g. sources = ["~/Documents"] to it')
        if conf.target is None:
            raise UsageError(f"set {name!r} in {cfg.path} has no target",
                             "add target = \"/media/you/BACKUP\" to it, or pass --to")
        paths, to, set_name = conf.sources, resolve_target(conf.target), name
        options.excludes = [*options.excludes, *conf.exclude]
        options.default_excludes = options.default_excludes and conf.default_excludes
        options.allow_mass_delete = options.allow_mass_delete or conf.allow_mass_delete
    progress: Progress = NullProgress() if as_json else RichProgress(err)
    try:
        result = backup(paths, to, set_name, options, SystemClock(), progress)
    finally:
        progress.finish()
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
    print_issues(s.issues, "Not copied or needing attention")
