"""`twofold runs` and `twofold history`: what a set holds."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from twofold.backup.inspect import history, runs_and_target
from twofold.cli.common import handles_errors, out, print_json, profile_json, size, when

FROM = typer.Option("--from", help="The target holding the backup.")
SET = typer.Option("--set", help="Backup set.")
JSON = typer.Option("--json", help="Print as JSON.")


@handles_errors
def runs_command(
    source: Annotated[str, FROM] = ...,  # type: ignore[assignment]
    set_name: Annotated[str, SET] = "default",
    as_json: Annotated[bool, JSON] = False,
) -> None:
    """List the runs of a set, one line each."""
    runs, profile = runs_and_target(source, set_name)
    if as_json:
        print_json({"target": profile_json(profile),
                    "runs": [{"id": r.id, "name": r.name, "started_ns": r.started_ns,
                              "finished_ns": r.finished_ns, "state": r.state,
                              "host": r.host, "config": r.config, "stats": r.stats}
                             for r in runs]})
        return
    table = Table("id", "versions folder", "finished", "state", "new", "changed", "deleted",
                  "moved", "unchanged", "skipped", "copied", box=None, header_style="bold")
    for r in runs:
        s = r.stats
        table.add_row(str(r.id), r.name, when(r.finished_ns), r.state,
                      *(f"{s.get(k, '-'):,}" if isinstance(s.get(k), int) else "-"
                        for k in ("new", "changed", "deleted", "moved", "unchanged",
                                  "skipped")),
                      size(s["bytes_copied"]) if "bytes_copied" in s else "-")
    out.print(table)
    if profile is not None:
        out.print(f"Target drive: {profile.summary()}", highlight=False)


@handles_errors
def history_command(
    path: Annotated[str, typer.Argument(help="Path inside the set, e.g. Documents/cv.odt.")],
    source: Annotated[str, FROM] = ...,  # type: ignore[assignment]
    set_name: Annotated[str, SET] = "default",
    as_json: Annotated[bool, JSON] = False,
) -> None:
    """List every kept version of a file or folder."""
    versions = history(source, set_name, path)
    if as_json:
        print_json([{"from_run": v.first_run, "from_run_name": v.first_name,
                     "until_run": v.until_run,
                     "kind": v.record.kind.value, "size": v.record.size,
                     "mtime_ns": v.record.mtime_ns,
                     "blake3": v.record.hash.hex() if v.record.hash else None,
                     "stored_at": v.location} for v in versions])
        return
    table = Table("from run", "until run", "kind", "size", "modified", "BLAKE3", "stored at",
                  box=None, header_style="bold")
    for v in versions:
        until = "now" if v.until_run is None else str(v.until_run)
        table.add_row(f"{v.first_run} ({v.first_name})", until,
                      v.record.kind.name.lower(), size(v.record.size),
                      when(v.record.mtime_ns),
                      v.record.hash.hex()[:16] if v.record.hash else "-", v.location)
    out.print(table)
