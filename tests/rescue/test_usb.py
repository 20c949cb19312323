"""`twofold rescue usb` on loop devices: it names the disk, wants its name typed, writes
and reads back; it refuses the running system's disk, a disk with a mounted file system,
a partition and a too small disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.drives import IS_ROOT, NOT_ROOT_REASON, loop_device, mounted, run
from twofold.cli.app import app
from twofold.rescue.usb import system_disks

pytestmark = [pytest.mark.root, pytest.mark.skipif(not IS_ROOT, reason=NOT_ROOT_REASON)]


@pytest.fixture
def iso(tmp_path: Path) -> Path:
    """A stand-in ISO: 3 MiB of seeded bytes (usb copies bytes; it does not parse them)."""
    p = tmp_path / "rescue.iso"
    p.write_bytes(os.urandom(3 << 20))
    return p


def _usb(*args: str, answer: str = "") -> tuple[int, str]:
    r = CliRunner().invoke(app, ["rescue", "usb", *args], input=answer + "\n")
    return r.exit_code, r.output


def test_writes_after_the_name_is_typed_and_reads_back(tmp_path: Path, iso: Path) -> None:
    stick = tmp_path / "stick.img"
    run("truncate", "-s", "8M", stick)
    with loop_device(stick) as dev:
        name = os.path.basename(dev)
        code, out = _usb(dev, "--iso", str(iso), answer="sdq")
        assert code == 2 and "not confirmed; nothing was written" in out
        assert stick.read_bytes()[:1 << 20] == bytes(1 << 20)
        code, out = _usb(dev, "--iso", str(iso), answer=name)
        assert code == 0, out
        assert f"loop device of {stick}" in out and "8.4 MB" in out
        assert "read back" in out
    assert stick.read_bytes()[:iso.stat().st_size] == iso.read_bytes()


def test_refuses_mounted_small_and_system(tmp_path: Path, iso: Path) -> None:
    small = tmp_path / "small.img"
    run("truncate", "-s", "2M", small)
    with loop_device(small) as dev:
        code, out = _usb(dev, "--iso", str(iso), "--yes")
        assert code == 2 and "too small" in out
    disk = tmp_path / "disk.img"
    run("truncate", "-s", "16M", disk)
    run("mkfs.ext4", "-q", "-F", disk)
    with loop_device(disk) as dev, mounted(["mount", dev], tmp_path / "mnt"):
        code, out = _usb(dev, "--iso", str(iso), "--yes")
        assert code == 2 and "is in use" in out and "mounted" in out
    system = system_disks()
    if not system:
        pytest.skip("the root file system is on no block device here (a container)")
    name = next(iter(system))
    code, out = _usb(f"/dev/{name}", "--iso", str(iso), "--yes")
    assert code == 2 and "holds the running system" in out


def test_refuses_a_partition(tmp_path: Path, iso: Path) -> None:
    parted = tmp_path / "parted.img"
    run("truncate", "-s", "16M", parted)
    run("sfdisk", "-q", parted, stdin="label: dos\nstart=2048, type=83\n")
    result = run("losetup", "-f", "--show", "-P", parted)
    dev = result.stdout.strip()
    try:
        for _ in range(50):  # the kernel makes the partition's node a moment later
            if os.path.exists(f"{dev}p1"):
                break
            time.sleep(0.1)
        if not os.path.exists(f"{dev}p1"):
            pytest.skip("this kernel makes no partitions on loop devices (losetup -P)")
        code, out = _usb(f"{dev}p1", "--iso", str(iso), "--yes")
        assert code == 2 and f"is a partition of {dev}" in out
    finally:
        run("losetup", "-d", dev)
