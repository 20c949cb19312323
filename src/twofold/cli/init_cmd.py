"""`twofold init`: write a commented config for the user's own folders, naming an external
drive by its file system's UUID and asking how often to run."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from twofold.cli.common import handles_errors, out
from twofold.core.errors import UsageError
from twofold.core.schedule import HINT, parse_schedule
from twofold.fsinfo.volume import on_system_disk, volume_of
from twofold.jobs.config import default_path, init_text, user_folders

ADVICE = ("daily suits folders that change every day (documents, photos being sorted); "
          "weekly suits the rest")


def drive_target(to: str) -> tuple[str, str]:
    """The target to write for `--to`, and a note: UUID=... when `to` is where an external
    drive is mounted (found wherever it is mounted next time), else the folder itself."""
    real = os.path.realpath(os.path.expanduser(to))
    if not os.path.isdir(real):
        return to, f"{real} was not found when this was written: is the drive mounted?"
    if os.path.ismount(real) and not on_system_disk(real):
        vol = volume_of(real)
        if vol.uuid:
            name = f"the drive {vol.label}" if vol.label else "the drive"
            return f"UUID={vol.uuid}", (f"{name}, mounted at {real} when this was written; "
                                        "found by its UUID wherever it is mounted")
    return to, ""


def ask_schedule() -> str | None:
    """How often, asked at a terminal; None when nobody can answer."""
    if not sys.stdin.isatty():
        return None
    answer = typer.prompt(f"How often should the backup run? daily, weekly, or none ({ADVICE})",
                          default="daily")
    return None if answer.strip().lower() in ("none", "no", "") else answer.strip()


@handles_errors
def init_command(
    ctx: typer.Context,
    to: Annotated[str | None, typer.Option(
        "--to", help="Target folder for the backups (an external drive's mount point is "
        "written as UUID=...).", show_default=False)] = None,
    schedule: Annotated[str | None, typer.Option(
        "--schedule", help=f"How often: daily, weekly, monthly, 'every N days' or none "
        f"({ADVICE}). Asked when not given.", show_default=False)] = None,
    image: Annotated[str | None, typer.Option(
        "--image", help="Also image this disk (e.g. /dev/sda) every 90 days or when the "
        "system changes.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing config.")]
    = False,
) -> None:
    """Write a config whose default set is your Documents, Pictures, Music, Videos, Desktop."""
    given = (ctx.obj or {}).get("config")
    path = Path(given) if given else default_path()
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "edit it, or pass --force to replace it")
    target, note = drive_target(to) if to else (None, "")
    if schedule is None:
        schedule = ask_schedule()
    elif schedule.strip().lower() == "none":
        schedule = None
    if schedule is not None:
        try:
            parse_schedule(schedule)
        except ValueError as err:
            raise UsageError(f"--schedule {schedule!r}: {err}", HINT) from None
    folders = user_folders(Path.home())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(init_text(folders, target, schedule, note, image), encoding="utf-8")
    out.print(f"Wrote {path}")
    out.print("  sources: " + (", ".join(map(str, folders)) or
                               "none found; add some to 'sources'"))
    if target and note:
        out.print(f"  target: {target} ({note})", markup=False)
        if target.startswith("UUID="):
            out.print("  The drive is named by its UUID, so a backup never goes to the empty "
                      "folder it leaves behind when it is unplugged.", markup=False)
    else:
        out.print("  target: " + (target or "not set; add 'target' or pass --to to backup"),
                  markup=False)
    if image:
        out.print(f"  image: {image}, every 90 days or when the system changes", markup=False)
    if schedule:
        out.print(f"  schedule: {schedule}")
        out.print("Turn the schedule on with: twofold schedule install")
    else:
        out.print("  schedule: none, so backups run only when you run `twofold backup`; "
                  "add schedule = \"daily\" to the set (or run init again with --schedule "
                  "daily), then `twofold schedule install`")
    out.print("Run it now with: twofold backup")
