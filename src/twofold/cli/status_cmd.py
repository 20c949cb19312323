"""`twofold status`: is every job current? Exit 4 when one is overdue or failing."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from twofold.cli.common import config_of, handles_errors, out, print_json, when
from twofold.core.errors import ExitCode, UsageError
from twofold.core.schedule import ago
from twofold.jobs.clock import SystemClock
from twofold.jobs.osprobe import fingerprint
from twofold.jobs.state import State
from twofold.jobs.status import gather, notify

STYLE = {"current": "green", "due": "yellow", "overdue": "bold red", "failing": "bold red",
         "manual": "dim"}


@handles_errors
def status_command(
    ctx: typer.Context,
    jobs: Annotated[list[str] | None, typer.Argument(help="Jobs to show (default: all).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    no_notify: Annotated[bool, typer.Option(
        "--no-notify", help="No desktop notification when something is overdue.")] = False,
) -> None:
    """Show each job: last successful run, due or overdue and why, last result, drive.
    Exit 0 when all is current, 4 when a job is overdue or failing."""
    cfg = config_of(ctx)
    for name in jobs or []:
        if cfg.job(name) is None:
            raise UsageError(f"no job named {name!r} in {cfg.path}",
                             f"jobs: {', '.join(j.name for j in cfg.jobs()) or 'none'}")
    clock = SystemClock()
    statuses = gather(cfg, State(), clock, fingerprint, jobs or None)
    code = int(ExitCode.ATTENTION) if any(s.verdict.attention for s in statuses) \
        else int(ExitCode.OK)
    if not no_notify:
        notify(statuses)
    if as_json:
        print_json({"jobs": [s.as_dict() for s in statuses], "exit_code": code})
        raise typer.Exit(code)
    if not statuses:
        out.print(f"no jobs in {cfg.path}; add [sets.NAME] or [images.NAME] "
                  "(docs/CONFIG.md)")
        raise typer.Exit(code)
    now = clock.now_ns()
    table = Table("job", "kind", "schedule", "last success", "state", "why", "last result",
                  "drive", box=None, header_style="bold")
    for s in statuses:
        last = "never" if s.last_ok_ns is None else \
            f"{when(s.last_ok_ns)} ({ago(now - s.last_ok_ns)} ago)"
        result = s.last_result or "-"
        if s.last_result in ("partial", "failed") and s.detail:
            result = f"{result}: {s.detail}"
        drive = "connected" if s.location else \
            ("last seen " + when(s.drive_seen_ns) if s.drive_seen_ns else "not seen")
        state = s.verdict.state
        table.add_row(s.name, s.kind, s.schedule or "-", last,
                      f"[{STYLE[state]}]{state}[/]", s.verdict.reason, result, drive)
    out.print(table)
    for s in statuses:
        if s.kind == "image" and s.location:
            out.print(f"{s.name}: last drill: {s.last_drill or 'never (twofold image drill)'}",
                      markup=False)
    raise typer.Exit(code)
