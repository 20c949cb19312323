"""`twofold run-due` (what timers and run-on-connect call) and `twofold log [JOB]`."""

from __future__ import annotations

from typing import Annotated

import typer

from twofold.cli.common import config_of, err, handles_errors, out, print_json
from twofold.core.errors import ExitCode, UsageError
from twofold.jobs.clock import SystemClock
from twofold.jobs.osprobe import fingerprint
from twofold.jobs.rundue import run_due
from twofold.jobs.state import State


@handles_errors
def run_due_command(
    ctx: typer.Context,
    drive: Annotated[str | None, typer.Option(
        "--drive", help="Only the jobs whose target is the file system with this UUID.")]
    = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    wait: Annotated[float, typer.Option(
        "--wait", min=0, help="Seconds to wait for the drive to be mounted (then mount it "
        "with udisksctl).")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Run even if not due.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Run the scheduled jobs that are due: all, those of --drive UUID, or --job NAME.
    A drive that is not connected is no error: nothing runs and nothing is printed."""
    cfg = config_of(ctx)
    outcomes = run_due(cfg, State(), SystemClock(), fingerprint, drive, job, wait, force)
    results = {o.result for o in outcomes}
    code = ExitCode.FAILED if "failed" in results else \
        ExitCode.PARTIAL if "partial" in results else ExitCode.OK
    if as_json:
        print_json({"jobs": [vars(o) for o in outcomes], "exit_code": int(code)})
        raise typer.Exit(int(code))
    for o in outcomes:
        if o.action == "absent" and drive is not None:
            continue  # run-on-connect for a drive that is not (or no longer) there: quiet
        if o.action == "ran":
            colour = {"ok": "green", "partial": "yellow"}.get(o.result or "", "bold red")
            out.print(f"{o.job}: [{colour}]{o.result}[/]" + (f" ({o.detail})" if o.detail
                                                             else "") + f"; log {o.log}")
        else:
            out.print(f"{o.job}: {o.action}: {o.detail}", markup=False)
    raise typer.Exit(int(code))


@handles_errors
def log_command(
    job: Annotated[str | None, typer.Argument(help="Job whose last log to show.")] = None,
    list_all: Annotated[bool, typer.Option("--list", help="List the log files instead.")]
    = False,
) -> None:
    """Show the log of the last run (of JOB, or of any job)."""
    logs = State().logs(job)
    if list_all:
        for p in logs:
            out.print(str(p), markup=False)
        return
    if not logs:
        raise UsageError("no run has been logged" + (f" for job {job!r}" if job else ""),
                         "runs started by the timers, by a plugged-in drive or by "
                         "`twofold run-due` are logged")
    err.print(f"[dim]{logs[-1]}[/]")
    out.print(logs[-1].read_text(encoding="utf-8", errors="replace"), markup=False, end="")
