"""`twofold schedule install|show|remove`: systemd timers (or crontab lines) for the jobs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from twofold.cli.common import config_of, err, handles_errors, out, print_json
from twofold.jobs.config import default_path
from twofold.jobs.schedules import Report, install, remove, show
from twofold.jobs.state import state_dir
from twofold.jobs.units import Invocation

schedule_app = typer.Typer(
    name="schedule", no_args_is_help=True,
    help="Install, show or remove the timers that run the jobs of the config.")

UnitDir = Annotated[Path | None, typer.Option(
    "--unit-dir", help="Use this folder (user/, system/, udev/ inside) instead of the "
    "system's; nothing is enabled.")]
Json = Annotated[bool, typer.Option("--json", help="Print as JSON.")]


def invocation(ctx: typer.Context) -> Invocation:
    """How units call this very twofold, with this config and state folder."""
    given = (ctx.obj or {}).get("config")
    config = Path(given) if given else default_path()
    return Invocation([sys.executable, "-m", "twofold"], str(config.resolve()),
                      str(state_dir().resolve()))


def _render(report: Report, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(vars(report))
        return
    for path in report.written:
        out.print(f"{verb} {path}", markup=False)
    for path in report.removed:
        out.print(f"removed {path}", markup=False)
    for unit, cal, nxt in report.timers:
        out.print(f"  {unit}: {cal}; next {nxt}", markup=False)
    for line in report.cron:
        out.print(f"crontab: {line}", markup=False)
    for note in report.notes:
        err.print(f"[yellow]note:[/] {note}")


@schedule_app.command("install")
@handles_errors
def install_command(
    ctx: typer.Context,
    unit_dir: UnitDir = None,
    cron: Annotated[bool, typer.Option("--cron", help="Use crontab even under systemd.")]
    = False,
    panel: Annotated[bool, typer.Option(
        "--panel", help="Also keep the control panel running (a user service on "
        "127.0.0.1:8765; `twofold panel --show` prints its address).")] = False,
    as_json: Json = False,
) -> None:
    """Write and enable a timer per scheduled job, a daily overdue check, and the udev
    rule that runs a drive's due jobs when it is plugged in."""
    cfg = config_of(ctx)
    report = install(cfg, invocation(ctx), unit_dir, True if cron else None, panel)
    _render(report, as_json, "wrote")


@schedule_app.command("show")
@handles_errors
def show_command(ctx: typer.Context, unit_dir: UnitDir = None, as_json: Json = False
                 ) -> None:
    """Show the installed units and crontab lines, and when each timer runs next."""
    _render(show(config_of(ctx), unit_dir), as_json, "installed")


@schedule_app.command("remove")
@handles_errors
def remove_command(ctx: typer.Context, unit_dir: UnitDir = None, as_json: Json = False
                   ) -> None:
    """Disable and remove every timer, unit, udev rule and crontab line of twofold."""
    _render(remove(config_of(ctx), unit_dir), as_json, "kept")
