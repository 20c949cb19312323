"""`twofold image mount`, `image umount` and `image files`: browse an image read-only,
or copy single files and folders out of it."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from twofold.cli.common import err, handles_errors, out, print_json, size
from twofold.cli.image_cmd import image_app
from twofold.cli.image_common import TARGET_HELP, Endpoint, Json
from twofold.cli.image_key import KeyFile, passphrase_for
from twofold.core.text import plural

if TYPE_CHECKING:
    from twofold.image.mount import MountResult


def _log_path(point: str) -> str:
    """Where a mount in the background writes what goes wrong (a damaged chunk)."""
    from twofold.jobs.state import state_dir

    folder = state_dir() / "mounts"
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(os.path.abspath(point).encode()).hexdigest()[:12]
    return str(folder / f"mount-{key}.log")


@image_app.command("mount")
@handles_errors
def mount_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    image: Annotated[str, typer.Argument(help="Image to mount.")],
    mountpoint: Annotated[str, typer.Argument(help="An empty folder to mount it on.")],
    background: Annotated[bool, typer.Option(
        "--background", help="Return once mounted; unmount with twofold image umount.")]
    = False,
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Mount IMAGE read-only on MOUNTPOINT: disk.img (the whole disk) and each partition
    as a file, and each partition's file system mounted beneath in its own folder
    (part1/, part2/...) where a driver for it exists. It stays mounted until Ctrl-C
    (or, with --background, until twofold image umount MOUNTPOINT). Needs root and FUSE
    (the package fuse3). A damaged chunk reads as an I/O error; the message names it."""
    from twofold.image.mount import mount_image, unmount_all

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:  # SIGTERM and SIGHUP as Ctrl-C: everything comes down
        log = _log_path(mountpoint) if background else None
        r = mount_image(target, image, mountpoint, log=log, endpoint=s3_endpoint,
                        passphrase=passphrase_for(target, s3_endpoint, key_file))
        try:
            _show(r, log, as_json, background)
            if not background:
                _wait(r.point)
        except KeyboardInterrupt:
            before[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)  # no 2nd
            done = unmount_all(r.point)
            err.print(f"unmounted {r.point} ({_counted(done)})")
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _show(r: MountResult, log: str | None, as_json: bool, background: bool) -> None:
    if as_json:
        print_json({"image": r.image, "point": r.point, "pid": r.pid, "log": log,
                    "disk_file": r.disk_file, "parts": [vars(p) for p in r.parts]})
        return
    out.print(f"[bold]Image {r.image} mounted read-only on {r.point}[/]")
    if r.disk_file:
        out.print(f"  {r.disk_file}: the whole disk", markup=False)
    for p in r.parts:
        where = f"{p.folder}/" + ("" if p.mounted else " (empty)")
        file = f"{p.file}, " if p.file else ""
        out.print(f"  {p.label}: {file}{where}: {p.note}", markup=False)
    unmounted = [p for p in r.parts if not p.mounted]
    if unmounted:
        err.print(f"[yellow]note:[/] {plural(len(unmounted), 'file system')} not "
                  "mounted here; each partition is still there as a file")
    if background:
        out.print(f"  unmount with: twofold image umount {r.point}   (errors: {log})",
                  markup=False)


def _wait(point: str) -> None:
    """Wait until Ctrl-C (KeyboardInterrupt), or until someone else unmounted it."""
    from twofold.image.mount import is_mounted

    err.print("Press Ctrl-C to unmount.")
    while is_mounted(point):
        time.sleep(0.5)


@image_app.command("umount")
@handles_errors
def umount_command(
    mountpoint: Annotated[str, typer.Argument(help="Where the image is mounted.")],
) -> None:
    """Unmount an image mounted with twofold image mount: its partitions' file systems,
    their loop devices, then the image itself."""
    from twofold.image.mount import unmount_all

    done = unmount_all(mountpoint)
    out.print(f"unmounted {os.path.abspath(mountpoint)} ({_counted(done)})")


def _counted(done: list[str]) -> str:
    loops = sum(1 for d in done if d.startswith("/dev/loop"))
    return f"{plural(len(done) - loops, 'file system')}, {plural(loops, 'loop device')}"


@image_app.command("files")
@handles_errors
def files_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    image: Annotated[str, typer.Argument(help="Image to copy from.")],
    paths: Annotated[list[str], typer.Argument(
        help="Paths in the image, as image mount shows them: part2/home/me/notes.txt "
             "(the partition's folder may be left out when the image has one).")],
    to: Annotated[str, typer.Option("--to", help="Folder to copy them into (made if "
                                    "missing).")],
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Copy files or folders out of IMAGE into --to DIR, each under its own name, with
    modes, owners, times, links and xattrs; no file is overwritten. A path not in the
    image: nothing is copied (exit 1). Needs root and FUSE, like image mount."""
    from twofold.image.mountfiles import copy_files

    r = copy_files(target, image, paths, to, endpoint=s3_endpoint,
                   passphrase=passphrase_for(target, s3_endpoint, key_file))
    if as_json:
        print_json(vars(r))
        return
    out.print(f"[bold]Copied {plural(len(r.copied), 'path')} from {r.image}[/]: "
              f"{r.entries:,} entries, {size(r.bytes)}")
    for path, dest in r.copied:
        out.print(f"  {path} -> {dest}", markup=False)
