"""A drill that is killed leaves no QEMU behind (SIGKILL: the kernel kills QEMU with its
parent) and, on SIGTERM, no scratch copy either."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

from tests.bootdisks import boot_disk
from tests.imaging.conftest import FixedClock
from twofold.core.progress import NullProgress
from twofold.image.create import create


def _qemu_child(pid: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == pid and comm.startswith("qemu-system"):
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError("the drill started no QEMU")


def _gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_drill_leaves_no_qemu(sig: int, tmp_path: Path) -> None:
    store = tmp_path / "drive"
    store.mkdir()
    create(str(boot_disk("bios-mbr").path), str(store), "sys", 3, None, False,
           NullProgress(), FixedClock())
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    cli = Path(sys.executable).parent / "twofold"
    proc = subprocess.Popen([str(cli), "image", "drill", str(store), "--accel", "tcg",
                             "--scratch", str(scratch)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    qemu = 0
    try:
        qemu = _qemu_child(proc.pid)
        os.kill(proc.pid, sig)
        proc.wait(60)
        assert _gone(qemu), "QEMU outlived twofold"
        if sig == signal.SIGTERM:
            assert proc.returncode == 130
            assert not list(scratch.iterdir())  # the scratch copy is gone too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if qemu and not _gone(qemu, 0):  # never leave one behind, even when failing
            with suppress(ProcessLookupError):
                os.kill(qemu, signal.SIGKILL)
