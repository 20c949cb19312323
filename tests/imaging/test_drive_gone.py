"""An image store knows its drive: store.json names it, a create into the folder of a drive
that is not connected is refused, and a drive pulled during a create stops it with nothing
written on the system disk (real ext4 drives, root only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.cli.app import app

from ..backup.test_drive_checks import everything_under, ext4_drive
from ..drives import IS_ROOT, NOT_ROOT_REASON
from .conftest import MiB, store_files

pytestmark = pytest.mark.skipif(not IS_ROOT, reason=f"real drives {NOT_ROOT_REASON}")
runner = CliRunner()


def _random_source(path: Path, mib: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(mib // 4):
            f.write(os.urandom(4 * MiB))
    return path


def test_create_after_eject_is_refused(tmp_path: Path) -> None:
    src = _random_source(tmp_path / "src.img", 8)
    mnt = tmp_path / "BACKUP"
    with ext4_drive(tmp_path, mnt):
        got = runner.invoke(app, ["image", "create", str(src), "--to", str(mnt)])
        assert got.exit_code == 0, got.output
        marker = json.loads((mnt / "twofold-images/store.json").read_text())
        assert marker["drive"]["label"] == "BACKUP" and len(marker["drive"]["id"]) == 16
    got = runner.invoke(app, ["image", "create", str(src), "--to", str(mnt)])
    assert got.exit_code == 1, got.output
    assert "the drive BACKUP is not connected" in got.output, got.output
    assert everything_under(mnt) == []


def test_a_drive_pulled_during_create_writes_nothing_elsewhere(tmp_path: Path) -> None:
    src = _random_source(tmp_path / "src.img", 192)
    mnt = tmp_path / "BACKUP"
    with ext4_drive(tmp_path, mnt, "512M"):
        child = subprocess.Popen(
            [sys.executable, "-m", "twofold", "image", "create", str(src), "--to", str(mnt),
             "--compression", "12"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        deadline = time.monotonic() + 120
        while not store_files(mnt, ".pack") and child.poll() is None:
            assert time.monotonic() < deadline, "no pack was written within two minutes"
            time.sleep(0.01)
        os.kill(child.pid, 19)  # SIGSTOP: the drive goes while the create is mid-way
        subprocess.run(["umount", "-l", str(mnt)], check=True)
        os.kill(child.pid, 18)  # SIGCONT
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 1, out
        assert "the drive BACKUP is gone" in out, out
        assert "complete" not in out, out
        assert everything_under(mnt) == [], "the create wrote onto the system disk"
