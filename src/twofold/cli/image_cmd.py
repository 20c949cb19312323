"""`twofold image ...`: create, list, verify, restore, delete and prune system images."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer

from twofold.cli.common import err, handles_errors, out, print_json, size, when
from twofold.cli.render import RichProgress
from twofold.core.errors import ExitCode, UsageError
from twofold.core.models import Issue
from twofold.core.paths import show
from twofold.core.progress import NullProgress, Progress

# The image engine (numpy, zstandard, the file system readers) is imported inside each
# command, so that `twofold backup` and the other commands do not pay for loading it.
from twofold.jobs.clock import SystemClock

if TYPE_CHECKING:
    from twofold.image.manage import DeleteResult
    from twofold.image.repo import Target

image_app = typer.Typer(
    name="image", no_args_is_help=True,
    help="System images: compressed, incremental, verified images of disks and partitions.")

VOLUME_PRESETS = {"dvd": 4_700_000_000, "bd": 25_000_000_000, "fat32": (4 << 30) - 1}
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}

Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
TARGET_HELP = "Where the images are: a folder, sftp://user@host[:port]/path or s3://bucket/prefix."
Endpoint = Annotated[str | None, typer.Option(
    "--s3-endpoint", envvar="AWS_ENDPOINT_URL", show_envvar=True,
    help="S3 endpoint URL for non-AWS storage (Ceph, MinIO).")]


class ImageProgress(RichProgress):
    """Bars by bytes only (images count bytes, not files)."""

    def _files_text(self) -> str:
        return ""


def _progress(as_json: bool) -> Progress:
    return NullProgress() if as_json else ImageProgress(err)


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


def _target(text: str, endpoint: str | None) -> Target:
    """The store a TARGET names (a network store is connected on first use)."""
    from twofold.store.remote import open_target

    return open_target(text, endpoint) if endpoint else text


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
    allow_system_disk: Annotated[bool, typer.Option(
        "--allow-system-disk",
        help="Allow a new store in an empty mount point on the system disk.")] = False,
    new_drive: Annotated[bool, typer.Option(
        "--new-drive",
        help="Start the store anew here although it was on another drive before.")] = False,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Image SOURCE into the store on --to TARGET; only new chunks are stored."""
    from twofold.jobs.state import State

    level = parse_level(compression)
    volume = parse_size(volume_size) if volume_size else None
    progress = _progress(as_json)
    state = State()
    try:
        from twofold.image.create import create

        r = create(source, _target(to, s3_endpoint), name, level, volume, force, progress,
                   SystemClock(), None if new_drive else state.seen_drive("image", to),
                   allow_system_disk)
    finally:
        progress.finish()
    if r.drive is not None:
        state.remember_drive("image", to, "", r.drive)
    if as_json:
        print_json({"image": r.name, "kind": r.kind, "size": r.size, **r.as_dict(),
                    "ratio": round(r.ratio, 3),
                    "issues": [i.message for i in r.issues]})
        return
    _issues(r.issues)
    out.print(f"[bold]Image {r.name} complete[/] ({r.kind}, {size(r.size)})")
    out.print(f"  used {size(r.used_bytes)}   stored new {size(r.stored_new_bytes)}   "
              f"ratio {f'{r.ratio:.2f}' if r.ratio else '-'}   chunks new {r.new_chunks:,} reused "
              f"{r.reused_chunks:,} zero {r.zero_chunks:,}   {r.seconds:.1f} s")


@image_app.command("list")
@handles_errors
def list_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """List the complete images in TARGET, oldest first."""
    from twofold.image.manage import list_images

    images = list_images(_target(target, s3_endpoint))
    if as_json:
        print_json([vars(i) for i in images])
        return
    if not images:
        out.print("no images")
        return
    out.print(f"{'name':32} {'created':19} {'kind':9} {'size':>9} {'used':>9} {'new':>9}")
    for i in images:
        out.print(f"{i.name:32} {when(i.created_ns):19} {i.kind:9} {size(i.size):>9} "
                  f"{size(i.used_bytes):>9} {size(i.stored_new_bytes):>9}", markup=False)


@image_app.command("verify")
@handles_errors
def verify_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    image: Annotated[str | None, typer.Argument(help="Image to check (default: all).")]
    = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Re-read every chunk of IMAGE (or of all images) and check its hash."""
    progress = _progress(as_json)
    try:
        from twofold.image.verify import verify

        r = verify(_target(target, s3_endpoint), image, progress, SystemClock())
    finally:
        progress.finish()
    code = int(ExitCode.FAILED) if r.damages else int(ExitCode.OK)
    if as_json:
        print_json({"images": r.images, "chunks": r.chunks, "bytes": r.bytes,
                    "seconds": round(r.seconds, 3), "damages": [vars(d) for d in r.damages],
                    "exit_code": code})
        raise typer.Exit(code)
    for d in r.damages:
        err.print(f"[bold red]damaged:[/] {d}", markup=True)
    head = "[bold red]DAMAGED[/]" if r.damages else "[bold]OK[/]"
    out.print(f"{head}: {len(r.images)} image(s), {r.chunks:,} chunks, {size(r.bytes)} "
              f"checked in {r.seconds:.1f} s" + (f"; {len(r.damages)} damaged" if r.damages
                                                   else ""))
    raise typer.Exit(code)


@image_app.command("restore")
@handles_errors
def restore_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    image: Annotated[str, typer.Argument(help="Image to restore.")],
    to: Annotated[str, typer.Option("--to", help="Device or file to write (created if "
                                    "missing).")],
    partition: Annotated[int | None, typer.Option(
        "--partition", min=1, help="Restore only this partition of a disk image.")] = None,
    no_readback: Annotated[bool, typer.Option(
        "--no-readback", help="Skip reading the written data back to check it.")] = False,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Write IMAGE to --to DEVICE_OR_FILE, checking every chunk before writing it and
    reading it back afterwards."""
    progress = _progress(as_json)
    try:
        from twofold.image.restore import restore

        r = restore(_target(target, s3_endpoint), image, to, partition, progress, SystemClock(),
                    readback=not no_readback)
    finally:
        progress.finish()
    if as_json:
        print_json(vars(r))
        return
    out.print(f"[bold]Restored {r.image} to {r.dest}[/]: {size(r.bytes_written)} written, "
              f"{r.chunks:,} chunks checked, {size(r.bytes_checked)} read back, "
              f"{r.seconds:.1f} s")
    if r.gpt_moved:
        out.print(f"  GPT backup copy moved to the end of the larger disk "
                  f"({size(r.dest_size)})")


def _deleted(r: DeleteResult, as_json: bool, dry_run: bool = False) -> None:
    if as_json:
        print_json({**vars(r), "dry_run": dry_run})
        return
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb}: {', '.join(r.deleted) or 'nothing'}; kept {len(r.kept)} image(s)")
    if not dry_run:
        out.print(f"  {r.packs_changed} pack(s) dropped or rewritten, "
                  f"{size(r.bytes_freed)} freed")


@image_app.command("delete")
@handles_errors
def delete_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    image: Annotated[str, typer.Argument(help="Image to delete.")],
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Delete IMAGE and free the chunks no other image needs."""
    progress = _progress(as_json)
    try:
        from twofold.image.manage import delete

        r = delete(_target(target, s3_endpoint), image, progress, SystemClock())
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
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Keep the newest --keep N images; delete the rest and free their chunks."""
    progress = _progress(as_json)
    try:
        from twofold.image.manage import prune

        r = prune(_target(target, s3_endpoint), keep, progress, SystemClock(), dry_run=dry_run)
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
    as_json: Json = False,
) -> None:
    """Copy images from SRC to DST (e.g. the drive to offsite), sending only the chunks DST
    lacks, checking each; an interrupted copy resumes where it stopped."""
    progress = _progress(as_json)
    try:
        from twofold.image.copy import copy

        r = copy(_target(src, s3_endpoint), _target(dst, s3_endpoint), images or None,
                 progress, SystemClock())
    finally:
        progress.finish()
    if as_json:
        print_json(vars(r))
        return
    names = f": {', '.join(r.copied)}" if r.copied else ""
    there = f"; {len(r.skipped)} already there" if r.skipped else ""
    out.print(f"[bold]Copied {len(r.copied)} image(s)[/]{names}{there}")
    out.print(f"  sent {r.chunks_sent:,} chunks ({size(r.bytes_sent)}), "
              f"{r.chunks_present:,} were there, {r.chunks_checked:,} read back, "
              f"{r.seconds:.1f} s")
