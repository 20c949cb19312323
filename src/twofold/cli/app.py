"""The `twofold` command: global options and the list of commands."""

from __future__ import annotations

import gc
import importlib
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from twofold import __version__

COMMANDS = {  # name: (module, attribute), in the order of the help
    "backup": ("backup_cmd", "backup_command"),
    "restore": ("restore_cmd", "restore_command"),
    "verify": ("verify_cmd", "verify_command"),
    "runs": ("runs_cmd", "runs_command"),
    "history": ("runs_cmd", "history_command"),
    "prune": ("prune_cmd", "prune_command"),
    "repair": ("repair_cmd", "repair_command"),
    "sets": ("sets_cmd", "sets_command"),
    "init": ("init_cmd", "init_command"),
    "status": ("status_cmd", "status_command"),
    "run-due": ("rundue_cmd", "run_due_command"),
    "log": ("rundue_cmd", "log_command"),
    "drives": ("drives_cmd", "drives_command"),
    "eject": ("drives_cmd", "eject_command"),
    "advise": ("advise_cmd", "advise_command"),
    "image": ("image_cmd", "image_app"),
    "schedule": ("schedule_cmd", "schedule_app"),
    "rescue": ("rescue_cmd", "rescue_app"),
    "panel": ("panel_cmd", "panel_command"),
}
"""Each command is imported when it is run (or listed in --help), not at every start:
`twofold backup` does not load the image, schedule and job commands (about 0.05 s)."""


def load_command(name: str) -> click.Command:
    """The click command of one of COMMANDS, built by typer from its module."""
    module, attr = COMMANDS[name]
    found = getattr(importlib.import_module(f"twofold.cli.{module}"), attr)
    if isinstance(found, typer.Typer):
        return quiet_none_defaults(typer.main.get_group(found))
    single = typer.Typer(add_completion=False)
    single.command(name)(found)
    return quiet_none_defaults(typer.main.get_command(single))


def quiet_none_defaults(command: click.Command) -> click.Command:
    """No "[default: None]" in any --help: a parameter without a default (None, or a
    required one) shows none, in `command` and every subcommand."""
    for param in command.params:  # typer's arguments take show_default too
        if (param.default is None or param.required) and hasattr(param, "show_default"):
            param.show_default = False
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            quiet_none_defaults(sub)
    return command


class LazyGroup(TyperGroup):
    """The root group: knows the names of its commands, loads each on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            self.add_command(load_command(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="twofold", cls=LazyGroup, no_args_is_help=True, add_completion=False,
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


def main() -> None:
    """Console-script entry point."""
    # A run holds hundreds of thousands of long-lived objects (rows, changes, steps) and
    # makes few reference cycles; the default thresholds re-scan them all the time (about
    # 2.5 s of a 100,000-file first run). Objects made at start-up are never scanned.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    app()
