"""`twofold drives` (what is plugged in, which jobs use it) and `twofold eject TARGET`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from twofold.cli.common import config_of, handles_errors, out, print_json, size
from twofold.jobs.config import Config, drive_of
from twofold.jobs.drives import Drive, eject, list_drives


def jobs_on(drive: Drive, cfg: Config) -> list[str]:
    """The jobs whose target is this drive (by UUID or label)."""
    names = []
    for job in cfg.jobs():
        spec = drive_of(job.target)
        if spec and ((spec[0] == "uuid" and drive.uuid and spec[1].lower() == drive.uuid.lower())
                     or (spec[0] == "label" and spec[1] == drive.label)):
            names.append(job.name)
    return names


@handles_errors
def drives_command(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option(
        "--all", help="Every file system, not only external drives.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List external drives: model, size, file system, label, UUID, mount point, jobs."""
    cfg = config_of(ctx)
    drives = [d for d in list_drives()
              if (show_all and d.fstype) or (d.external and d.type != "disk") or jobs_on(d, cfg)]
    rows = [{**vars(d), "jobs": jobs_on(d, cfg)} for d in drives]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no external drive found" + ("" if show_all else " (--all lists every "
                                                "file system)"))
        return
    table = Table("device", "model", "size", "fs", "label", "UUID", "mounted at", "jobs",
                  box=None, header_style="bold")
    for r in rows:
        table.add_row(*(str(r[k] or "-") for k in ("path", "model")), size(int(r["size"])),
                      *(str(r[k] or "-") for k in ("fstype", "label", "uuid", "mountpoint")),
                      ", ".join(r["jobs"]) or "-")
    out.print(table)


@handles_errors
def eject_command(
    target: Annotated[str, typer.Argument(
        help="Mount point, device, UUID=..., LABEL=... or the name of a job.")],
    ctx: typer.Context,
) -> None:
    """Flush, unmount and power off a drive; says when it is safe to disconnect."""
    job = config_of(ctx).job(target)
    if job is not None and job.target:
        target = job.target
    e = eject(target)
    where = f" from {e.mountpoint}" if e.mountpoint else ""
    out.print(f"{e.device}: flushed and unmounted{where}; {e.note}.")
    out.print("[bold green]It is safe to disconnect the drive.[/]")
