"""`twofold restore`: restore a set, or some paths of it, as of a run or a time."""

from __future__ import annotations

from typing import Annotated

import typer

from twofold.backup.restore import restore
from twofold.cli.common import (
    err,
    handles_errors,
    issue_dict,
    local_tz,
    out,
    print_issues,
    print_json,
    size,
)
from twofold.cli.render import RichProgress
from twofold.core.errors import ExitCode
from twofold.core.progress import NullProgress, Progress
from twofold.core.text import plural

FAILED_KINDS = {"damaged", "failed"}


@handles_errors
def restore_command(
    paths: Annotated[list[str] | None, typer.Argument(
        help="Paths inside the set to restore (all when none), e.g. Documents/letters.")]
    = None,
    source: Annotated[str, typer.Option("--from", help="The target holding the backup.")]
    = ...,  # type: ignore[assignment]
    to: Annotated[str, typer.Option("--to", help="Folder to restore into.")]
    = ...,  # type: ignore[assignment]
    set_name: Annotated[str, typer.Option("--set", help="Backup set.")] = "default",
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Run id (see `twofold runs`) or ISO 8601 date/time.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace files that already exist in the destination.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
    = False,
) -> None:
    """Restore files from --from TARGET into --to DIR, exactly as a run left them."""
    progress: Progress = NullProgress() if as_json else RichProgress(err)
    try:
        result = restore(source, set_name, to, list(paths or []), as_of, overwrite, progress,
                         local_tz())
    finally:
        progress.finish()
    code = ExitCode.OK
    if any(i.kind in FAILED_KINDS for i in result.issues):
        code = ExitCode.FAILED
    elif result.issues:
        code = ExitCode.PARTIAL
    if as_json:
        print_json({"run_id": result.run_id, "run": result.run_name, "files": result.files,
                    "bytes": result.bytes, "entries": result.entries,
                    "issues": [issue_dict(i) for i in result.issues], "exit_code": int(code)})
    else:
        out.print(f"[bold]Restored run {result.run_id} ({result.run_name})[/] into {to}: "
                  f"{plural(result.entries, 'entry', 'entries')}, "
                  f"{plural(result.files, 'file')}, {size(result.bytes)}")
        print_issues(result.issues, "Not restored")
    raise typer.Exit(int(code))
