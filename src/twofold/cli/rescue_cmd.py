"""`twofold rescue ...`: build the rescue ISO, write it to a USB stick, run the guided
restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twofold.cli.common import err, handles_errors, out, print_json, size
from twofold.cli.render import RichProgress
from twofold.core.progress import NullProgress, Progress
from twofold.jobs.clock import SystemClock

rescue_app = typer.Typer(
    name="rescue", no_args_is_help=True,
    help="Rescue media: a bootable ISO with twofold inside and a guided restore.")

Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


class StageProgress(RichProgress):
    """One line per finished stage, and a spinner for the running one."""

    def __init__(self) -> None:
        super().__init__(err)
        self.current: str | None = None

    def _files_text(self) -> str:
        return ""

    def phase(self, name: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        """Say which stage begins."""
        if self.current is not None:
            self.console.print(f"  done: {self.current}")
        if not self.console.is_terminal:  # no spinner names the running stage in a log
            self.console.print(f"  {name}...")
        self.current = name
        super().phase(name, total_files, total_bytes)


@rescue_app.command("build")
@handles_errors
def build_command(
    out_path: Annotated[str, typer.Option("--out", help="Where to write the ISO.")]
    = "twofold-rescue.iso",
    source: Annotated[str | None, typer.Option(
        "--source", help="The twofold checkout to put inside (default: the one running).")]
    = None,
    cache: Annotated[str | None, typer.Option(
        "--cache", help="Cache folder (default /var/cache/twofold/rescue as root).")] = None,
    as_json: Json = False,
) -> None:
    """Build a hybrid rescue ISO (BIOS and UEFI with Secure Boot; a CD or, written raw, a
    USB stick) with this twofold inside. An unchanged rebuild comes from the cache."""
    from twofold.rescue.build import build

    progress: Progress = NullProgress() if as_json else StageProgress()
    try:
        r = build(out_path, source, Path(cache) if cache else None, progress, SystemClock())
    finally:
        progress.finish()
    if as_json:
        print_json({**vars(r), "stages": dict(r.stages)})
        return
    how = "from the cache" if r.cached else "built"
    out.print(f"[bold]Rescue ISO {how}:[/] {r.path} ({size(r.size)}, key {r.key}, "
              f"{r.seconds:.0f} s)")
    out.print("  stages: " + ", ".join(f"{n} {s:.0f} s" for n, s in r.stages), markup=False)


@rescue_app.command("usb")
@handles_errors
def usb_command(
    device: Annotated[str, typer.Argument(help="The USB stick's disk, e.g. /dev/sdb.")],
    iso: Annotated[str, typer.Option("--iso", help="The ISO to write.")]
    = "twofold-rescue.iso",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask; overwrite DEVICE.")] = False,
    as_json: Json = False,
) -> None:
    """Write the rescue ISO to a USB stick and read it back. Refuses the running system's
    disk and any disk with a mounted partition; asks to type the disk's name first."""
    import os

    from twofold.core.errors import UsageError
    from twofold.rescue import usb

    if not os.path.isfile(iso):
        raise UsageError(f"no ISO at {iso}", "build one first: twofold rescue build")
    stick = usb.check(device, os.path.getsize(iso))
    err.print(f"[bold]{device}[/]: {stick.model}, {size(stick.size)} — everything on it "
              "will be overwritten.")
    if not yes:
        answer = typer.prompt(f"Type {stick.name} to overwrite it", default="",
                              show_default=False, err=True)
        if answer.strip() not in (stick.name, device):
            raise UsageError("not confirmed; nothing was written",
                             f"type {stick.name} to confirm, or pass --yes")
    progress: Progress = NullProgress() if as_json else RichProgress(err)
    started = SystemClock().now_ns()
    try:
        r = usb.write(iso, device, progress)
    finally:
        progress.finish()
    r.seconds = (SystemClock().now_ns() - started) / 1e9
    if as_json:
        print_json(vars(r))
        return
    out.print(f"[bold]Wrote and read back {device}[/]: {size(r.bytes_written)} in "
              f"{r.seconds:.1f} s; the stick boots on BIOS and UEFI PCs")


@rescue_app.command("guide")
@handles_errors
def guide_command(
    boot: Annotated[bool, typer.Option(
        "--boot", help="Run as the rescue system's start screen: read twofold.* options "
        "of the kernel command line, offer reboot and power off.")] = False,
    answers: Annotated[str | None, typer.Option(
        "--answers", help="Answer file (TOML: store, image, disk, yes, after): restore "
        "without questions.")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Look at these devices only (repeatable).")] = None,
    mount_base: Annotated[str | None, typer.Option(
        "--mount-base", help="Where found drives are mounted read-only.")] = None,
) -> None:
    """The guided restore: find drives with images, pick an image and a disk, confirm by
    the disk's name, restore, verify. Plain text: works on screens and serial consoles."""
    from twofold.cli.rescue_guide import make_guide

    g = make_guide(boot, answers, only or None)
    if mount_base:
        g.base = Path(mount_base)
    raise typer.Exit(g.run())
