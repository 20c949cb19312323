"""The drive is the drive: a backup into a folder whose drive is not connected (ejected,
unplugged, never mounted) is refused with a message that names the drive, and writes nothing
on the system disk; a drive pulled during a run stops it (real ext4 drives, root only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.cli.app import app
from twofold.core.errors import TargetError
from twofold.fsinfo.volume import DriveGuard, DriveId, volume_of

from ..drives import IS_ROOT, NOT_ROOT_REASON, foreign_drive, mounted, run
from .conftest import build_tree

pytestmark = pytest.mark.skipif(not IS_ROOT, reason=f"real drives {NOT_ROOT_REASON}")
runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    got = runner.invoke(app, list(args))
    return got.exit_code, got.output


@contextmanager
def ext4_drive(where: Path, mnt: Path, size: str = "64M") -> Iterator[Path]:
    """A new ext4 drive (a file mounted through a loop device) at `mnt`."""
    image = where / f"{mnt.name}.img"
    run("truncate", "-s", size, image)
    run("mkfs.ext4", "-q", "-L", "BACKUP", image)
    with mounted(["mount", "-o", "loop", str(image)], mnt):
        yield mnt


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_backup_after_eject_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src", files=10)
    mnt = tmp_path / "BACKUP"
    with ext4_drive(tmp_path, mnt):
        code, text = cli("backup", str(src), "--to", str(mnt))
        assert code == 0, text
        assert json.loads((mnt / "twofold/default/drive.json").read_text())["label"] == "BACKUP"
    assert everything_under(mnt) == []  # the empty mount point on the system disk
    code, text = cli("backup", str(src), "--to", str(mnt))
    assert code == 1, text
    assert "the drive BACKUP is not connected" in text and "empty folder on the system disk" \
        in text, text
    assert everything_under(mnt) == []
    code, text = cli("backup", str(src), "--to", str(mnt), "--dry-run")
    assert code == 1 and "not connected" in text, text
    with ext4_drive(tmp_path, mnt):  # a new, empty drive in the same place
        code, text = cli("backup", str(src), "--to", str(mnt))
        assert code == 1 and "--new-drive" in text, text
        code, text = cli("backup", str(src), "--to", str(mnt), "--new-drive")
        assert code == 0, text


@pytest.mark.parametrize("kind", ["exfat", "ntfs"])
def test_eject_then_backup_on_the_drives_people_own(kind: str, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src", files=10)
    with foreign_drive(kind, tmp_path, "64M") as mnt:
        code, text = cli("backup", str(src), "--to", str(mnt))
        assert code == 0, text
        drive = DriveId.from_json(json.loads((mnt / "twofold/default/drive.json").read_text()))
        assert drive is not None
        if kind == "exfat":  # on a loop device: named by its UUID, as udev says it
            assert drive.uuid and drive.uuid == drive.uuid.upper(), drive
    assert everything_under(mnt) == []
    code, text = cli("backup", str(src), "--to", str(mnt))
    assert code == 1, text
    assert f"the drive {drive.name()} is not connected" in text, text
    assert everything_under(mnt) == []


def test_a_first_run_into_an_empty_mount_point_needs_allow_system_disk(
        tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src", files=5)
    folder = Path("/mnt") / f"twofold-test-{os.getpid()}-{tmp_path.name}"
    folder.mkdir(parents=True)
    try:
        code, text = cli("backup", str(src), "--to", str(folder))
        assert code == 1, text
        assert "no drive is connected" in text and "--allow-system-disk" in text, text
        assert everything_under(folder) == []
        with ext4_drive(tmp_path, folder):  # a drive mounted there is taken at once
            code, text = cli("backup", str(src), "--to", str(folder))
            assert code == 0, text
        code, text = cli("backup", str(src), "--to", str(folder), "--allow-system-disk",
                         "--new-drive")
        assert code == 0, text
        assert (folder / "twofold/default/current/src").is_dir()
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_a_drive_pulled_mid_run_stops_it_and_nothing_lands_on_the_system_disk(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(600):  # folders too: each is made on the target as the run goes
        folder = src / f"d{i // 10:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:04d}.bin").write_bytes(os.urandom(64 * 1024))
    mnt = tmp_path / "BACKUP"
    with ext4_drive(tmp_path, mnt, "256M"):
        child = subprocess.Popen(
            [sys.executable, "-m", "twofold", "backup", str(src), "--to", str(mnt),
             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tmp = mnt / "twofold/default/current/src"
        deadline = time.monotonic() + 60
        while not (tmp.is_dir() and any(tmp.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.poll() is None, "the run ended before the drive was pulled"
        subprocess.run(["umount", "-l", str(mnt)], check=True)
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 1, out
        assert "the drive BACKUP is gone" in out, out
        assert everything_under(mnt) == [], "the run wrote onto the system disk"
        mnt.mkdir(exist_ok=True)  # for the unmount of the fixture (already lazily done)


def test_the_guard_notices_a_lazy_unmount(tmp_path: Path) -> None:
    mnt = tmp_path / "BACKUP"
    with ext4_drive(tmp_path, mnt):
        (mnt / "set").mkdir()
        vol = volume_of(str(mnt))
        assert vol.mountpoint == str(mnt) and vol.fstype == "ext4" and vol.label == "BACKUP"
        guard = DriveGuard(str(mnt / "set"), DriveId("x", vol.uuid, vol.label), str(mnt))
        guard.check()
        subprocess.run(["umount", "-l", str(mnt)], check=True)
        with pytest.raises(TargetError, match="the drive BACKUP is gone"):
            guard.check()


def test_a_run_that_cannot_fit_is_refused_before_copying(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(25):
        (src / f"f{i:02d}.bin").write_bytes(os.urandom(4 << 20))  # 100 MiB
    mnt = tmp_path / "SMALL"
    with ext4_drive(tmp_path, mnt, "80M"):
        for extra in (["--dry-run"], []):
            code, text = cli("backup", str(src), "--to", str(mnt), *extra)
            assert code == 1, text
            assert "MB free, but this run would copy 25 files of 104.9 MB" in text, text
            assert "nothing was copied" in text
        current = mnt / "twofold/default/current"
        assert not current.exists() or not any(current.iterdir())
        for f in list(src.iterdir())[:20]:
            f.unlink()
        code, text = cli("backup", str(src), "--to", str(mnt))
        assert code == 0, text
        for f in sorted(src.iterdir()):
            f.write_bytes(os.urandom(4 << 20))  # the old copies move to versions/
        code, text = cli("backup", str(src), "--to", str(mnt), "--allow-mass-delete")
        assert code == 0, text
        for i in range(25, 40):  # 60 MiB more: prune is named with what versions/ holds
            (src / f"f{i:02d}.bin").write_bytes(os.urandom(4 << 20))
        code, text = cli("backup", str(src), "--to", str(mnt))
        assert code == 1 and "twofold prune --from" in text and "versions/ holds 21.0 MB" \
            in text, text
