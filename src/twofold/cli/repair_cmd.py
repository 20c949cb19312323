"""`twofold repair`: replace a damaged catalog with what can be saved of it and current/."""

from __future__ import annotations

from typing import Annotated

import typer

from twofold.backup.repair import repair
from twofold.cli.common import err, handles_errors, issue_dict, out, print_issues, print_json
from twofold.cli.render import RichProgress
from twofold.core.errors import ExitCode
from twofold.core.progress import NullProgress, Progress
from twofold.core.text import plural
from twofold.jobs.clock import SystemClock


@handles_errors
def repair_command(
    source: Annotated[str, typer.Option("--from", help="The target holding the backup.")]
    = ...,  # type: ignore[assignment]
    set_name: Annotated[str, typer.Option("--set", help="Backup set.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
    = False,
) -> None:
    """Check the set's catalog; if it is damaged, keep every row that can be read, give
    the files in current/ and versions/ whose rows were lost new ones, and keep the
    damaged file beside the new one. Exit 3 when some entries were left (listed)."""
    progress: Progress = NullProgress() if as_json else RichProgress(err)
    try:
        result = repair(source, set_name, SystemClock(), progress)
    finally:
        progress.finish()
    code = int(ExitCode.PARTIAL if result.issues else ExitCode.OK)
    if as_json:
        print_json({"intact": result.intact, "problems": result.problems,
                    "kept_rows": result.kept, "damaged_stretches": result.gaps,
                    "readded": result.readded, "versions_readded": result.versions,
                    "closed": result.closed,
                    "run": result.run_name, "damaged_copy": result.damaged_copy,
                    "issues": [issue_dict(i) for i in result.issues], "exit_code": code})
        raise typer.Exit(code)
    if result.intact:
        out.print(f"The catalog of set '{set_name}' is intact; nothing to repair.")
        raise typer.Exit(code)
    out.print(f"[bold]Repaired[/] the catalog of set '{set_name}' (run {result.run_name}).")
    out.print(f"  SQLite found: {'; '.join(result.problems[:3])}", markup=False)
    out.print(f"  kept {plural(result.kept.get('runs', 0), 'run')} and "
              f"{plural(result.kept.get('entries', 0), 'entry row')}; "
              f"{plural(result.gaps, 'damaged stretch', 'damaged stretches')} of rows could "
              "not be read")
    out.print(f"  {plural(result.readded, 'entry', 'entries')} of current/ given rows again "
              "(their content hashed from the copy)")
    out.print(f"  {plural(result.versions, 'entry', 'entries')} of versions/ folders given "
              "rows again "
              "(restore --as-of finds them)")
    out.print(f"  {plural(result.closed, 'row')} closed: their copy is missing from current/; the "
              "next backup copies them again")
    if result.damaged_copy is not None:
        out.print(f"  the damaged catalog is kept as {result.damaged_copy}", markup=False)
    print_issues(result.issues, "Left for the next backup")
    raise typer.Exit(code)
