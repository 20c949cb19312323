"""The `twofold` command: global options and the list of commands."""

from __future__ import annotations

import gc
from typing import Annotated

import typer

from twofold import __version__
from twofold.cli.advise_cmd import advise_command
from twofold.cli.backup_cmd import backup_command
from twofold.cli.drives_cmd import drives_command, eject_command
from twofold.cli.image_cmd import image_app
from twofold.cli.init_cmd import init_command
from twofold.cli.prune_cmd import prune_command
from twofold.cli.restore_cmd import restore_command
from twofold.cli.rundue_cmd import log_command, run_due_command
from twofold.cli.runs_cmd import history_command, runs_command
from twofold.cli.schedule_cmd import schedule_app
from twofold.cli.status_cmd import status_command
from twofold.cli.verify_cmd import verify_command

app = typer.Typer(
    name="twofold", no_args_is_help=True, add_completion=False,
    help="Exact-copy incremental backups of your files, and incremental images of whole "
         "disks. Exit codes: 0 ok, 1 failed, 2 usage error, 3 finished but some items were "
         "skipped (listed), 4 (status) a job is overdue or failing.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"twofold {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[str | None, typer.Option(
        "--config", envvar="TWOFOLD_CONFIG", help="Config file to use.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version.")] = False,
) -> None:
    """Keep a computer safe: backups of your files and images of your system."""
    ctx.obj = {"config": config}


app.command("backup")(backup_command)
app.command("restore")(restore_command)
app.command("verify")(verify_command)
app.command("runs")(runs_command)
app.command("history")(history_command)
app.command("prune")(prune_command)
app.command("init")(init_command)
app.command("status")(status_command)
app.command("run-due")(run_due_command)
app.command("log")(log_command)
app.command("drives")(drives_command)
app.command("eject")(eject_command)
app.command("advise")(advise_command)
app.add_typer(image_app, name="image")
app.add_typer(schedule_app, name="schedule")


def main() -> None:
    """Console-script entry point."""
    # A run holds hundreds of thousands of long-lived objects (rows, changes, steps) and
    # makes few reference cycles; the default thresholds re-scan them all the time (about
    # 2.5 s of a 100,000-file first run). Objects made at start-up are never scanned.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    app()
