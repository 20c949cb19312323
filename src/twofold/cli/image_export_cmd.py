"""`twofold image export`: write an image as a virtual-disk file (raw, VHD, VHDX, qcow2,
VMDK) that QEMU, VirtualBox, Hyper-V or VMware can start."""

from __future__ import annotations

from typing import Annotated

import typer

from twofold.cli.common import handles_errors, out, print_json, size
from twofold.cli.image_common import TARGET_HELP, Endpoint, Json, progress_for, target_of
from twofold.cli.image_key import KeyFile
from twofold.jobs.clock import SystemClock


@handles_errors
def export_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    image: Annotated[str, typer.Argument(help="Image to export.")],
    fmt: Annotated[str, typer.Option(
        "--format", help="raw, vhd, vhdx, qcow2 or vmdk.")],
    to: Annotated[str, typer.Option("--to", help="The file to write (must not exist).")],
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Write IMAGE as one virtual-disk file, streamed from the store: unused blocks take no
    room, every chunk is checked, and nothing is left behind when the export stops (a
    full drive, a damaged chunk, Ctrl-C). Needs qemu-img (Debian package qemu-utils).
    Images with partitions taken at file level must be restored first."""
    progress = progress_for(as_json)
    try:
        from twofold.image.export import export

        r = export(target_of(target, s3_endpoint, key_file), image, fmt.lower(), to, progress,
                   SystemClock())
    finally:
        progress.finish()
    if as_json:
        print_json(vars(r))
        return
    out.print(f"[bold]Exported {r.image} to {r.dest}[/] ({r.format}): a {size(r.size)} "
              f"disk in {size(r.file_bytes)}, {size(r.bytes_read)} read from the store, "
              f"{r.seconds:.1f} s")
    if r.boot_note:
        out.print(f"  {r.boot_note}", markup=False)
