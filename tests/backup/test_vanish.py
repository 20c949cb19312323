"""A backup drive unplugged in the middle of a run (simulated with a lazy unmount of a real
exFAT drive): the run stops with a clear message; once the drive is back, the next run
finishes the job, the catalog is sound and verify passes (root only)."""

from __future__ import annotations

import multiprocessing
import random
import subprocess
import time
from pathlib import Path

import pytest

from twofold.backup.engine import BackupOptions, backup
from twofold.core.errors import TargetError
from twofold.core.models import Issue
from twofold.core.progress import NullProgress

from ..drives import loop_device, mounted, need_drive_tools, run
from .conftest import (
    SET,
    FakeClock,
    assert_same_tree,
    build_tree,
    catalog_rows,
    rand_bytes,
    run_backup,
    run_restore,
    run_verify,
    snapshot,
    write_file,
)


class UnplugAfter(NullProgress):
    """Progress that pulls the drive out after `reports` reports of copied bytes."""

    def __init__(self, mountpoint: Path, reports: int) -> None:
        self.mountpoint = mountpoint
        self.left = reports
        self.unplugged = False

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        if nbytes and not self.unplugged:
            self.left -= 1
            if self.left <= 0:
                subprocess.run(["umount", "-l", str(self.mountpoint)], check=True)
                self.unplugged = True

    def issue(self, issue: Issue) -> None:
        pass


def _run_and_unplug(src: Path, mnt: Path, clock: FakeClock) -> tuple[str, str, str]:
    """One run in a child process (which then exits, as the command would) that pulls the
    drive out after a few copies; what it failed with."""
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[tuple[str, str, str]] = ctx.Queue()

    def child() -> None:
        unplug = UnplugAfter(mnt, 3)
        try:
            backup([str(src)], str(mnt), SET, BackupOptions(), clock, unplug)
            queue.put(("finished", f"unplugged={unplug.unplugged}", ""))
        except TargetError as err:
            queue.put(("TargetError", err.message, err.hint))
        except BaseException as err:
            queue.put((type(err).__name__, str(err), ""))

    proc = ctx.Process(target=child)
    proc.start()
    got = queue.get(timeout=120)
    proc.join(30)
    return got


def _wait_gone(dev: str) -> None:
    """Wait until the FUSE driver of the lazily unmounted drive has let go of `dev`."""
    for _ in range(200):
        if subprocess.run(["pgrep", "-f", f"exfat-fuse {dev}"],
                          check=False, capture_output=True).returncode != 0:
            return
        time.sleep(0.05)
    pytest.fail(f"the exFAT driver of {dev} did not exit after the lazy unmount")


def test_a_drive_unplugged_mid_run_is_a_clear_error_and_the_next_run_finishes(
        tmp_path: Path, clock: FakeClock) -> None:
    need_drive_tools("exfat")
    src = build_tree(tmp_path / "src", files=20)
    rng = random.Random(5)
    for i in range(400):  # enough batches of work that the unplug lands mid-run
        write_file(src / "bulk" / f"b{i:03d}.bin", rand_bytes(rng, 40_000))
    image = tmp_path / "exfat.img"
    run("truncate", "-s", "512M", image)
    run("mkfs.exfat", image)
    mnt = tmp_path / "mnt"
    with loop_device(image) as dev:
        with mounted(["mount.exfat-fuse", dev], mnt):
            clock.jump(3600)
            kind, message, hint = _run_and_unplug(src, mnt, clock)
            assert kind == "TargetError", message
            assert "the drive" in message and "is gone" in message, (message, hint)
        _wait_gone(dev)
        with mounted(["mount.exfat-fuse", dev], mnt):
            assert catalog_rows(mnt, "PRAGMA integrity_check") == [("ok",)]
            again = run_backup(src, mnt, clock)
            assert again.stats.new > 0  # the rest of the job
            assert not run_verify(mnt).problems
            out = tmp_path / "restored"
            assert not run_restore(mnt, out).issues
            assert_same_tree(snapshot(out / "src"), snapshot(src), "restore after the unplug")
            states = catalog_rows(mnt, "SELECT state FROM runs ORDER BY id")
            assert states == [("interrupted",), ("complete",)]
