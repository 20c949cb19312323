"""`twofold image ...`: create, list, verify, restore, export, delete and prune system
images."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer

from twofold.cli.common import (
    AllowSystemDisk,
    NewDrive,
    err,
    handles_errors,
    out,
    print_json,
    size,
    when,
)
from twofold.cli.image_common import TARGET_HELP, Endpoint, Json
from twofold.cli.image_common import progress_for as _progress
from twofold.cli.image_common import target_of as _target
from twofold.cli.image_export_cmd import export_command
from twofold.cli.image_key import Encrypt, KeyFile
from twofold.cli.image_restore_cmd import restore_command
from twofold.core.errors import ExitCode, UsageError
from twofold.core.models import Issue
from twofold.core.paths import show
from twofold.core.text import plural

# The image engine (numpy, zstandard, the file system readers) is imported inside each
# command, so that `twofold backup` and the other commands do not pay for loading it.
from twofold.jobs.clock import SystemClock

if TYPE_CHECKING:
    from twofold.image.manage import DeleteResult

image_app = typer.Typer(
    name="image", no_args_is_help=True,
    help="System images: compressed, incremental, verified images of disks and partitions.")

VOLUME_PRESETS = {"dvd": 4_700_000_000, "bd": 25_000_000_000, "fat32": (4 << 30) - 1}
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}

def parse_level(text: str) -> int:
    """fast, balanced, max or a zstd level 1..22."""
    from twofold.image.create import LEVELS

    if text.lower() in LEVELS:
        return LEVELS[text.lower()]
    if text.isdigit() and 1 <= int(text) <= 22:
        return int(text)
    raise UsageError(f"bad --compression {text!r}", "use fast, balanced, max or 1..22")


def parse_size(text: str) -> int:
    """A size: dvd, bd, fat32, or a number with an optional unit (700M, 4GiB)."""
    if text.lower() in VOLUME_PRESETS:
        return VOLUME_PRESETS[text.lower()]
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?", text.strip().lower())
    if not found:
        raise UsageError(f"bad size {text!r}", "e.g. 700M, 4GiB, dvd, bd or fat32")
    return int(float(found.group(1)) * _UNITS[found.group(2) or ""])


def _issues(issues: list[Issue]) -> None:
    for i in issues:
        err.print(f"[yellow]note:[/] {show(i.path)}: {i.message}")


@image_app.command("create")
@handles_errors
def create_command(
    source: Annotated[str, typer.Argument(help="Disk, partition or image file to image.")],
    to: Annotated[str, typer.Option("--to", help=TARGET_HELP)],
    name: Annotated[str | None, typer.Option("--name", help="Image name.")] = None,
    compression: Annotated[str, typer.Option(
        "--compression", help="fast, balanced, max or a zstd level 1..22.")] = "balanced",
    volume_size: Annotated[str | None, typer.Option(
        "--volume-size", help="Split the store into volumes: SIZE, dvd, bd or fat32.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Image a file system marked dirty as it is.")] = False,
    allow_system_disk: AllowSystemDisk = False,
    new_drive: NewDrive = False,
    encrypt: Encrypt = False,
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Image SOURCE into the store on --to TARGET; only new chunks are stored. A partition
    mounted read-write (ext2/3/4, XFS, FAT) is imaged at file level from its mounted tree;
    files that kept changing while read are named (exit 3). A mounted btrfs is read from
    read-only snapshots of its subvolumes, mounted LVM volumes from temporary LVM
    snapshots; both are removed afterwards."""
    from twofold.jobs.state import State

    level = parse_level(compression)
    volume = parse_size(volume_size) if volume_size else None
    progress = _progress(as_json)
    state = State()
    try:
        from twofold.image.create import create

        r = create(source, _target(to, s3_endpoint, key_file, encrypt), name, level, volume,
                   force, progress, SystemClock(),
                   None if new_drive else state.seen_drive("image", to), allow_system_disk)
    finally:
        progress.finish()
    if r.drive is not None:
        state.remember_drive("image", to, "", r.drive)
    if as_json:
        print_json({"image": r.name, "kind": r.kind, "size": r.size, **r.as_dict(),
                    "ratio": round(r.ratio, 3), "taken": dict(r.taken), "cleaned": r.cleaned,
                    "issues": [i.message for i in r.issues]})
        _exit_if_unstable(r.issues)
        return
    _issues(r.issues)
    out.print(f"[bold]Image {r.name} complete[/] ({r.kind}, {size(r.size)})")
    out.print(f"  used {size(r.used_bytes)}   stored new {size(r.stored_new_bytes)}   "
              f"ratio {f'{r.ratio:.2f}' if r.ratio else '-'}   chunks new {r.new_chunks:,} reused "
              f"{r.reused_chunks:,} zero {r.zero_chunks:,}   {r.seconds:.1f} s")
    for label, how in r.taken:
        out.print(f"  {label}: {how}", markup=False)
    for line in r.cleaned:
        out.print(f"  removed what a killed run left: {line}", markup=False)
    _exit_if_unstable(r.issues)


def _exit_if_unstable(issues: list[Issue]) -> None:
    """Exit 3 when files kept changing while a live file system was imaged."""
    unstable = [i for i in issues if i.kind == "unstable"]
    if unstable:
        err.print(f"[yellow]{len(unstable)} file(s) kept changing while read and may be "
                  "inconsistent in the image[/] (listed above)")
        raise typer.Exit(int(ExitCode.PARTIAL))


@image_app.command("list")
@handles_errors
def list_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """List the complete images in TARGET, oldest first: each one's partitions and file
    systems, about what deleting it alone would free, and its last drill (damaged ones
    named: exit 3)."""
    from twofold.image.manage import list_store

    listing = list_store(_target(target, s3_endpoint, key_file))
    images = listing.images
    damaged_notes(listing.damaged)
    if as_json:
        print_json([{**vars(i), "volumes": [vars(v) for v in i.volumes]} for i in images])
        raise typer.Exit(int(ExitCode.PARTIAL) if listing.damaged else int(ExitCode.OK))
    if not images:
        out.print("no images")
    else:
        out.print(f"{'name':32} {'created':19} {'host':16} {'kind':9} {'size':>9} "
                  f"{'used':>9} {'new':>9} {'frees':>9}")
    for i in images:
        kind = f"{i.kind} {i.table}" if i.table else i.kind
        out.print(f"{i.name:32} {when(i.created_ns):19} {i.host or '-':16} {kind:9} "
                  f"{size(i.size):>9} {size(i.used_bytes):>9} "
                  f"{size(i.stored_new_bytes):>9} {size(i.frees_bytes):>9}", markup=False)
        for v in i.volumes:
            what = f"partition {v.number}" if v.number is not None else "volume"
            label = f', label "{v.label}"' if v.label else ""
            name = f', name "{v.name}"' if v.name else ""
            taken = ", file level" if v.taken == "files" else ""
            out.print(f"    {what:12} {v.fs or 'other':8} {size(v.size):>9}, "
                      f"{size(v.used_bytes)} used{label}{name}{taken}", markup=False)
        if i.last_drill:
            out.print(f"    last drill: {i.last_drill}", markup=False)
    raise typer.Exit(int(ExitCode.PARTIAL) if listing.damaged else int(ExitCode.OK))


image_app.command("restore")(restore_command)
image_app.command("export")(export_command)


def damaged_notes(damaged: dict[str, str]) -> None:
    """Name each damaged manifest that was skipped, on stderr."""
    for name, problem in damaged.items():
        err.print(f"[bold red]damaged:[/] image {name}: {problem} (skipped)", markup=True)


def _deleted(r: DeleteResult, as_json: bool, dry_run: bool = False) -> None:
    code = int(ExitCode.PARTIAL) if r.damaged else int(ExitCode.OK)
    if as_json:
        print_json({**vars(r), "dry_run": dry_run, "exit_code": code})
        raise typer.Exit(code)
    damaged_notes(r.damaged)
    verb = "would delete" if dry_run else "deleted"
    kept = plural(len(r.kept), 'image')
    out.print(f"{verb}: {', '.join(r.deleted) or 'nothing'}; kept {kept}"
              + (f"; {plural(len(r.damaged), 'damaged image')} skipped, their chunks kept"
                 if r.damaged else ""))
    if dry_run:
        out.print(f"  would free about {size(r.bytes_freed)}")
    else:
        out.print(f"  {plural(r.packs_changed, 'pack')} dropped or rewritten, "
                  f"{size(r.bytes_freed)} freed")
    raise typer.Exit(code)


@image_app.command("delete")
@handles_errors
def delete_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    image: Annotated[str, typer.Argument(help="Image to delete.")],
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Delete IMAGE and free the chunks no other image needs."""
    progress = _progress(as_json)
    try:
        from twofold.image.manage import delete

        r = delete(_target(target, s3_endpoint, key_file), image, progress, SystemClock())
    finally:
        progress.finish()
    _deleted(r, as_json)


@image_app.command("prune")
@handles_errors
def prune_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    keep: Annotated[int, typer.Option("--keep", min=1, help="Newest images to keep.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would go.")]
    = False,
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Keep the newest --keep N images; delete the rest and free their chunks."""
    progress = _progress(as_json)
    try:
        from twofold.image.manage import prune

        r = prune(_target(target, s3_endpoint, key_file), keep, progress, SystemClock(),
                  dry_run=dry_run)
    finally:
        progress.finish()
    _deleted(r, as_json, dry_run)


@image_app.command("copy")
@handles_errors
def copy_command(
    src: Annotated[str, typer.Argument(help="Store to copy from (folder or URL).")],
    dst: Annotated[str, typer.Argument(help="Store to copy to (folder or URL).")],
    images: Annotated[list[str] | None, typer.Argument(help="Images to copy (default: all).")]
    = None,
    s3_endpoint: Endpoint = None,
    key_file: KeyFile = None,
    as_json: Json = False,
) -> None:
    """Copy images from SRC to DST (e.g. the drive to offsite), sending only the chunks DST
    lacks, checking each; an interrupted copy resumes where it stopped. An encrypted SRC
    goes into a new DST that takes its key (the same passphrase opens both), or into an
    earlier copy of it."""
    progress = _progress(as_json)
    try:
        from twofold.image.copy import copy

        r = copy(_target(src, s3_endpoint, key_file), _target(dst, s3_endpoint, key_file),
                 images or None, progress, SystemClock())
    finally:
        progress.finish()
    damaged_notes(r.damaged)
    if as_json:
        print_json(vars(r))
        return
    names = f": {', '.join(r.copied)}" if r.copied else ""
    there = f"; {len(r.skipped)} already there" if r.skipped else ""
    out.print(f"[bold]Copied {plural(len(r.copied), 'image')}[/]{names}{there}")
    out.print(f"  sent {plural(r.chunks_sent, 'chunk')} ({size(r.bytes_sent)}), "
              f"{r.chunks_present:,} were there, {r.chunks_checked:,} read back, "
              f"{r.seconds:.1f} s")


# registers `image drill`, `image verify`, `image repair`, `image mount`, `image umount`,
# `image files`, `image cleanup` and `image passwd`
from twofold.cli import (  # noqa: E402,F401
    drill_cmd,
    image_check_cmd,
    image_cleanup_cmd,
    image_mount_cmd,
    image_passwd_cmd,
)
