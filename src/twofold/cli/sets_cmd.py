"""`twofold sets`: the backup sets on a drive, and deleting one."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from twofold.backup.sets import delete_set, list_sets
from twofold.cli.common import handles_errors, out, print_json, size, when
from twofold.core.errors import UsageError


@handles_errors
def sets_command(
    source: Annotated[str, typer.Option("--from", help="The target holding the backups.")]
    = ...,  # type: ignore[assignment]
    delete: Annotated[str | None, typer.Option(
        "--delete", help="Delete this set from the drive (asks to type its name).",
        show_default=False)] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the backup sets on a drive, or delete one."""
    if delete is not None:
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"deleting set {delete!r} needs a confirmation",
                                 "run it at a terminal, or pass --yes")
            typed = typer.prompt(f"This deletes every copy and version of set {delete!r} "
                                 f"on {source}. Type the set's name to go on")
            if typed != delete:
                raise UsageError("the name typed is not the set's: nothing was deleted")
        delete_set(source, delete)
        out.print(f"Deleted set {delete!r} from {source}", markup=False)
        return
    sets = list_sets(source)
    if as_json:
        print_json([vars(s) for s in sets])
        return
    if not sets:
        out.print(f"no backup sets on {source}", markup=False)
        return
    table = Table("set", "runs", "last complete run", "files", "size", box=None,
                  header_style="bold")
    for s in sets:
        table.add_row(s.name, str(s.runs), when(s.last_ok_ns), f"{s.files:,}", size(s.bytes))
    out.print(table)
