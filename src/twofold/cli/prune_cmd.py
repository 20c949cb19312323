"""`twofold prune`: drop old versions by a keep-daily/weekly/monthly policy."""

from __future__ import annotations

from typing import Annotated

import typer

from twofold.backup.prune import prune
from twofold.cli.common import handles_errors, local_tz, out, print_json, size
from twofold.core.retention import Policy
from twofold.core.text import plural


@handles_errors
def prune_command(
    source: Annotated[str, typer.Option("--from", help="The target holding the backup.")]
    = ...,  # type: ignore[assignment]
    set_name: Annotated[str, typer.Option("--set", help="Backup set.")] = "default",
    keep_daily: Annotated[int, typer.Option("--keep-daily", min=0)] = 0,
    keep_weekly: Annotated[int, typer.Option("--keep-weekly", min=0)] = 0,
    keep_monthly: Annotated[int, typer.Option("--keep-monthly", min=0)] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would go.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Remove versions/ files no kept run needs; current/ is never touched."""
    result = prune(source, set_name, Policy(keep_daily, keep_weekly, keep_monthly),
                   local_tz(), dry_run)
    if as_json:
        print_json({"kept_runs": result.kept_runs, "pruned_runs": result.pruned_runs,
                    "files_removed": result.files_removed, "bytes_freed": result.bytes_freed,
                    "dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    out.print(f"Kept runs {', '.join(map(str, result.kept_runs)) or '-'}; pruned runs "
              f"{', '.join(map(str, result.pruned_runs)) or '-'}; {verb} "
              f"{plural(result.files_removed, 'old version')} ({size(result.bytes_freed)}).")
