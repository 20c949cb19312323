"""`twofold image restore`: write an image to a disk or file; a disk is shown and must be
confirmed by typing its name (or --yes) before anything is written."""

from __future__ import annotations

import os
import stat
import sys
from typing import Annotated

import typer

from twofold.cli.common import err, handles_errors, out, print_json, size
from twofold.cli.image_common import TARGET_HELP, Endpoint, Json, progress_for, target_of
from twofold.cli.image_key import KeyFile
from twofold.core.errors import TwofoldError, UsageError
from twofold.core.text import plural
from twofold.jobs.clock import SystemClock


class NotConfirmed(TwofoldError):
    """The user did not type the disk's name: nothing was written (exit 1)."""


def is_disk(path: str) -> bool:
    """True when `path` is a block device (a disk or partition), which must be confirmed."""
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def can_ask() -> bool:
    """True when a person can answer on this terminal."""
    return sys.stdin.isatty()


def describe_disk(path: str) -> list[str]:
    """Lines showing the device at `path`: model, size, table, partitions with their
    names, file systems and labels."""
    from twofold.jobs.drives import disk_facts

    disk, kind, parts = disk_facts(path)
    head = [size(disk.size)] + ([f'"{disk.model}"'] if disk.model else [])
    head += [f"{kind.upper()} partition table" if kind in ("gpt", "mbr") else "no "
             "partition table"] + ([f"file system {disk.fstype}"] if disk.fstype else [])
    head += [f"mounted at {disk.mountpoint}"] if disk.mountpoint else []
    lines = [f"  {disk.path}: " + ", ".join(head)]
    for p in parts:
        facts = [size(p.size), p.fstype or "no file system"]
        facts += [f'label "{p.label}"'] if p.label else []
        facts += [f'name "{p.name}"'] if p.name else []
        lines.append(f"    partition {p.number}: " + ", ".join(facts))
    return lines


def confirm_disk(path: str, image: str) -> None:
    """Show the disk and ask for its name; NotConfirmed unless the user types it."""
    lines = describe_disk(path)
    name = os.path.basename(os.path.realpath(path))
    err.print(f"[bold]Image {image} will be written to {path}[/], replacing everything on "
              "it:")
    for line in lines:
        err.print(line, markup=False, highlight=False)
    answer = err.input(f"Type the disk's name ([bold]{name}[/]) to go on: ").strip()
    if answer.removeprefix("/dev/") != name:
        raise NotConfirmed(f"not confirmed ({answer!r} is not {name!r}): nothing was written",
                           "run again and type the name shown, or pass --yes")


@handles_errors
def restore_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    image: Annotated[str, typer.Argument(help="Image to restore.")],
    to: Annotated[str, typer.Option("--to", help="Device or file to write (created if "
                                    "missing).")],
    partition: Annotated[int | None, typer.Option(
        "--partition", min=1, show_default=False,
        help="Restore only this partition of a disk image.")] = None,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Write to a disk without asking to type its name.")] = False,
    no_readback: Annotated[bool, typer.Option(
        "--no-readback", help="Skip reading the written data back to check it.")] = False,
    grow: Annotated[bool, typer.Option(
        "--grow", help="On a larger disk, let the last partition take the new space.")
    ] = False,
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Write IMAGE to --to DEVICE_OR_FILE, checking every chunk before writing it and
    reading it back afterwards. A disk (block device) is shown first and must be confirmed
    by typing its name, unless --yes; its old partition-table and file-system signatures
    are erased before the image is written."""
    if is_disk(to) and not yes:
        from twofold.image.source import refuse_if_busy

        refuse_if_busy(to, writable_only=False, action="restore to")  # before asking
        if not can_ask():
            raise UsageError(f"{to} is a disk and there is no terminal to confirm it on",
                             "pass --yes to overwrite it without asking")
        confirm_disk(to, image)
    progress = progress_for(as_json)
    try:
        from twofold.image.restore import restore

        r = restore(target_of(target, s3_endpoint, key_file), image, to, partition, progress,
                    SystemClock(), readback=not no_readback, grow=grow)
    finally:
        progress.finish()
    if as_json:
        print_json({**vars(r), "files": [vars(f) for f in r.files]})
        return
    out.print(f"[bold]Restored {r.image} to {r.dest}[/]: {size(r.bytes_written)} written, "
              f"{plural(r.chunks, 'chunk')} checked, {size(r.bytes_checked)} read back, "
              f"{r.seconds:.1f} s")
    for f in r.files:
        out.print(f"  {f.label}: made anew at {size(f.size)}, {f.entries:,} entries, "
                  f"{size(f.file_bytes)} of files written, fsck clean", markup=False)
    if r.relaid:
        out.print("  laid out again: " + ", ".join(
            f"partition {n} {size(b)}" for n, b in sorted(r.relaid.items())), markup=False)
    if r.not_grown:
        out.print(f"  the partition grew, its file system did not: {', '.join(r.not_grown)}",
                  markup=False)
    if r.wiped:
        out.print(f"  old signatures erased first: {', '.join(r.wiped)}")
    if r.gpt_moved:
        out.print(f"  GPT backup copy moved to the end of the larger disk "
                  f"({size(r.dest_size)})")
    if r.boot_note:
        out.print(f"  {r.boot_note}", markup=False)
