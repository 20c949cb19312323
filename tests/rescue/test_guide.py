"""The guided restore, run in-process on loop devices with scripted answers: it finds the
store, refuses the store's disk and a too small disk, wants the disk's name typed, then
restores and reads back; unattended mode; no store at all."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.drives import mounted, run
from tests.image.conftest import tree_digest
from tests.rescue.conftest import Rig, Scripted, number_of
from twofold.cli.rescue_guide import Answers, Guide, answers_from
from twofold.core.errors import UsageError
from twofold.jobs.rescue_scan import kernel_options


def _same_start(disk: Path, device: str) -> bool:
    n = disk.stat().st_size
    with open(disk, "rb") as a, open(device, "rb") as b:
        return a.read(n) == b.read(n)


def _mounted_below(base: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(base))]


@pytest.mark.root
def test_guided_restore_refuses_then_restores(rig: Rig) -> None:
    name = os.path.basename(rig.target_dev)
    console = Scripted([
        "1",                          # the store (the only one found)
        "i",                          # an image, not the backup set beside it
        "",                           # the newest image
        number_of(rig.store_dev),     # refused: it holds the store
        number_of(rig.small_dev),     # refused: too small
        number_of(rig.target_dev),
        "no",                         # a wrong confirmation goes back to the store list
        "1", "i", "", number_of(rig.target_dev), name,
    ])
    code = Guide(console, base=rig.base, only=rig.devices).run()
    text = console.text
    assert code == 0, text
    assert "guided restore" in text.splitlines()[0]
    assert f"{rig.store_dev} (ext4, \"BACKUP\"): images; backup sets: docs" in text, text
    assert "1) pc-1   " in text and f"from {socket.gethostname()}:{rig.source}" in text, text
    assert "NOT ALLOWED: it holds the store being read" in text
    assert f"{rig.store_dev} is not allowed" in text
    assert f"{rig.small_dev} is too small" in text
    assert text.count("This overwrites") == 2
    assert f"Restored pc-1 to {rig.target_dev}" in text and "verified" in text
    assert "restoring 100 %" in text
    assert _same_start(rig.source, rig.target_dev)
    assert _mounted_below(rig.base) == []  # the store was mounted read-only, then released


@pytest.mark.root
def test_backup_set_restored_into_a_file_system(rig: Rig, tmp_path: Path) -> None:
    run("mkfs.ext4", "-q", "-F", "-L", "NEW", rig.target_dev)
    console = Scripted([
        "1", "f",                     # the store; folders, not an image
        "1",                          # backup set docs
        number_of(rig.store_dev),     # refused: the store's own disk
        number_of(rig.target_dev),
    ])
    assert Guide(console, base=rig.base, only=rig.devices).run() == 0, console.text
    assert "backup set docs" in console.text
    assert f"{rig.store_dev} is not allowed: it is on the disk holding the store" \
        in console.text
    assert "Restored backup set docs" in console.text
    with mounted(["mount", "-o", "ro", rig.target_dev], tmp_path / "check") as mnt:
        assert tree_digest(mnt / "twofold-restored/docs/tree") == \
            tree_digest(rig.source.parent / "tree")
    assert _mounted_below(rig.base) == []


@pytest.mark.root
def test_wrong_confirmation_writes_nothing(rig: Rig) -> None:
    console = Scripted(["1", "i", "", number_of(rig.target_dev), "sdz", "q"])
    assert Guide(console, base=rig.base, only=rig.devices).run() == 0
    with open(rig.target_dev, "rb") as f:
        assert f.read(1 << 20) == bytes(1 << 20)
    assert "Restored" not in console.text


@pytest.mark.root
def test_no_store_says_so_and_rescans(rig: Rig) -> None:
    console = Scripted(["r", "q"])
    Guide(console, base=rig.base, only=[rig.target_dev]).run()
    assert console.text.count("No store on any drive") == 2
    assert console.text.count("Looking for drives") == 2


@pytest.mark.root
def test_unattended_restore(rig: Rig) -> None:
    console = Scripted([])
    answers = Answers(store=rig.store_dev, image="latest", disk=rig.target_dev, yes=True)
    code = Guide(console, base=rig.base, only=rig.devices, answers=answers).run()
    assert code == 0, console.text
    assert _same_start(rig.source, rig.target_dev)
    assert "unattended restore finished with exit code 0" in console.text


@pytest.mark.root
def test_unattended_refuses_the_store_disk(rig: Rig) -> None:
    console = Scripted([])
    answers = Answers(disk=rig.store_dev, yes=True)
    code = Guide(console, base=rig.base, only=rig.devices, answers=answers).run()
    assert code == 2
    assert "holds the store being read" in console.text
    assert _mounted_below(rig.base) == []


def test_answers_from_kernel_and_file(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("boot=live quiet twofold.store=/dev/vdb twofold.image=pc-1 "
                       "twofold.disk=/dev/vdc twofold.yes=1 twofold.after=poweroff\n")
    opts = kernel_options(str(cmdline))
    a = answers_from(opts, None)
    assert a == Answers("/dev/vdb", "pc-1", "/dev/vdc", True, "poweroff")
    assert answers_from({"store": "/dev/vdb"}, None) is None  # no disk named: ask
    f = tmp_path / "answers.toml"
    f.write_text('store = "auto"\ndisk = "/dev/sdb"\n')
    assert answers_from({}, str(f)) == Answers("auto", "latest", "/dev/sdb", False, "shell")
    f.write_text('disk = "/dev/sdb"\nwipe = true\n')
    with pytest.raises(UsageError, match="unknown unattended setting"):
        answers_from({}, str(f))


def test_firmware_and_main_console_read_from_sysfs(tmp_path: Path) -> None:
    from twofold.jobs.rescue_scan import firmware, main_console

    assert firmware(str(tmp_path / "none")) == "BIOS"
    efi = tmp_path / "efi"
    (efi / "efivars").mkdir(parents=True)
    var = efi / "efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    var.write_bytes(b"\x06\x00\x00\x00\x01")
    assert firmware(str(efi)) == "UEFI, Secure Boot on"
    var.write_bytes(b"\x06\x00\x00\x00\x00")
    assert firmware(str(efi)) == "UEFI, Secure Boot off"
    active = tmp_path / "active"
    active.write_text("ttyS0 tty0\n")
    assert main_console(str(active)) == "/dev/tty1"
    active.write_text("tty0 ttyS0\n")
    assert main_console(str(active)) == "/dev/ttyS0"


@pytest.mark.root
def test_a_typed_in_store_when_no_drive_holds_one(rig: Rig, tmp_path: Path) -> None:
    from tests.rescue.conftest import Clock
    from twofold.core.progress import NullProgress
    from twofold.image.create import create

    folder = tmp_path / "nas"
    folder.mkdir()
    create(str(rig.source), str(folder), "typed-1", 3, None, False, NullProgress(), Clock())
    name = os.path.basename(rig.target_dev)
    console = Scripted(["n", str(tmp_path / "missing"),  # not a folder: says so
                        "n", str(folder), "", number_of(rig.target_dev), name])
    code = Guide(console, base=rig.base, only=[rig.target_dev, rig.small_dev]).run()
    assert code == 0, console.text
    assert "No store on any drive" in console.text
    assert f"{tmp_path / 'missing'} is not a folder" in console.text
    assert f"Restored typed-1 to {rig.target_dev}" in console.text
    assert _same_start(rig.source, rig.target_dev)
