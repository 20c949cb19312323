"""`twofold image cleanup`: remove the snapshots (btrfs, LVM) and temporary mounts that
image runs killed before they finished left on this machine."""

from __future__ import annotations

from twofold.cli.common import handles_errors, out, print_json
from twofold.cli.image_cmd import image_app
from twofold.cli.image_common import Json


@image_app.command("cleanup")
@handles_errors
def cleanup_command(as_json: Json = False) -> None:
    """Remove the snapshots and temporary mounts left by image runs that were killed (their
    process is gone); those of running images are kept. `image create` does this too for
    the disk it images."""
    from twofold.image.snapcleanup import cleanup_snapshots

    removed = cleanup_snapshots()
    if as_json:
        print_json({"removed": removed})
        return
    if not removed:
        out.print("nothing left by killed image runs")
    for line in removed:
        out.print(f"removed {line}", markup=False)
