"""`twofold image drill`: prove that an image boots (restore to a scratch copy, boot in
QEMU, watch the stages); the result is kept in the store."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from twofold.cli.common import handles_errors, out, print_json
from twofold.cli.image_cmd import image_app
from twofold.cli.image_common import TARGET_HELP, Endpoint, Json
from twofold.cli.image_common import progress_for as _progress
from twofold.cli.image_common import target_of as _target
from twofold.cli.image_key import KeyFile
from twofold.core.errors import ExitCode, UsageError
from twofold.jobs.clock import SystemClock


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the drill's cleanup runs: QEMU stopped, scratch copy removed


@image_app.command("drill")
@handles_errors
def drill_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    image: Annotated[str | None, typer.Argument(
        help="Image to drill (default: the newest disk image).")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=10, help="Seconds the boot may take, after the restore.")] = 600,
    accel: Annotated[str, typer.Option(
        "--accel", help="auto (KVM where it works, else TCG), kvm or tcg.")] = "auto",
    secure_boot: Annotated[bool, typer.Option(
        "--secure-boot", help="UEFI with Secure Boot on (OVMF with Microsoft's keys).")]
    = False,
    scratch: Annotated[Path | None, typer.Option(
        "--scratch", help="Folder for the scratch copy (default: the temp folder).")] = None,
    key_file: KeyFile = None,
    s3_endpoint: Endpoint = None,
    as_json: Json = False,
) -> None:
    """Restore IMAGE to a scratch file, boot it in QEMU with no network, and report each
    stage of the boot; exit 0 only when the system came up. The store is only read,
    except for the drill's record."""
    if accel not in ("auto", "kvm", "tcg"):
        raise UsageError(f"bad --accel {accel!r}", "use auto, kvm or tcg")
    from twofold.image.drill import DrillOptions, drill

    before = signal.signal(signal.SIGTERM, _stop)
    progress = _progress(as_json)
    try:
        rec = drill(_target(target, s3_endpoint, key_file), image, progress, SystemClock(),
                    DrillOptions(timeout=timeout, accel=accel, workdir=scratch,
                                 secure_boot=secure_boot))
    finally:
        progress.finish()
        signal.signal(signal.SIGTERM, before)
    code = ExitCode.OK if rec.passed else ExitCode.FAILED
    if as_json:
        from dataclasses import asdict

        print_json(asdict(rec))
        raise typer.Exit(int(code))
    head = "[bold green]PASSED[/]" if rec.passed else \
        f"[bold red]FAILED[/] at [bold]{rec.failed_stage}[/]: {rec.reason}"
    out.print(f"{head}  image {rec.image}, {rec.firmware.upper()} under "
              f"{rec.accel.upper() or '-'}")
    out.print(f"  {'restore to the scratch copy':31} {rec.restore_seconds:7.1f} s")
    for s in rec.stages:
        at = f"{s.seconds:7.1f} s" if s.seconds is not None else "      -  "
        out.print(f"  {s.name:31} {at}  {s.evidence}", markup=False)
    for note in rec.notes:
        out.print(f"  note: {note}", markup=False)
    if rec.screenshot:
        out.print(f"  screenshot: {rec.screenshot['object']} (in the store)")
    out.print(f"  drill took {rec.seconds:.1f} s; recorded as {rec.object}")
    raise typer.Exit(int(code))
