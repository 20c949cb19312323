"""`image drill` on real bootable test disks: it passes on BIOS+MBR, BIOS+GPT and UEFI,
fails naming the stage on blank boot code and on a damaged root file system, changes
nothing in the store but its record, and names the package when QEMU is missing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tests.bootdisks import KINDS, SIGNED, BootDisk, boot_disk
from tests.imaging.conftest import FixedClock
from tests.jobs.conftest import Cli, cli, json_of, state
from twofold.blobs.remote import open_target
from twofold.cli.app import app
from twofold.core.progress import NullProgress
from twofold.fsinfo.blockio import FileReader
from twofold.fsinfo.extedit import ext_write
from twofold.fsinfo.parttable import parse_table
from twofold.image.create import create
from twofold.image.drill import FIRMWARE_STAGE, ROOT_STAGE, STAGES, DrillOptions, drill
from twofold.image.drillprep import MARKER
from twofold.image.drillrecord import last_drill
from twofold.vm.qemu import VmUnavailable

runner = CliRunner()
__all__ = ["cli", "state"]  # fixtures of the status test


def _store(tmp_path: Path, disk: Path) -> Path:
    store = tmp_path / "drive"
    store.mkdir(parents=True)
    create(str(disk), str(store), "sys", 3, None, False, NullProgress(), FixedClock())
    return store


def _files(store: Path) -> dict[str, str]:
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file()}


def _damaged_copy(disk: BootDisk, tmp_path: Path, offset: int, length: int) -> Path:
    copy = tmp_path / "damaged.raw"
    shutil.copyfile(disk.path, copy)
    with copy.open("r+b") as f:
        f.seek(offset)
        f.write(bytes(length))
    return copy


@pytest.mark.parametrize("kind", KINDS)
def test_drill_passes_and_changes_only_its_record(kind: str, tmp_path: Path) -> None:
    disk = boot_disk(kind)
    store = _store(tmp_path, disk.path)
    before = _files(store)
    rec = drill(str(store), None, NullProgress(), FixedClock(), DrillOptions(timeout=300))
    assert rec.passed, (rec.failed_stage, rec.reason, rec.console_tail)
    assert rec.firmware == disk.firmware
    assert [s.name for s in rec.stages] == list(STAGES)
    assert all(s.seconds is not None for s in rec.stages)
    assert rec.stages[3].evidence.startswith(MARKER)  # the marker itself, not implied
    assert rec.screenshot is not None
    after = _files(store)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed and all(k.startswith("twofold-images/drills/sys/") for k in changed)
    png = store / "twofold-images" / rec.screenshot["object"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    got = last_drill(open_target(str(store)), "sys")
    assert got is not None and got.passed and got.object == rec.object


def test_secure_boot_drill_passes_through_debians_signed_shim(tmp_path: Path) -> None:
    store = _store(tmp_path, boot_disk(SIGNED).path)
    rec = drill(str(store), None, NullProgress(), FixedClock(),
                DrillOptions(timeout=400, secure_boot=True))
    assert rec.passed, (rec.failed_stage, rec.reason, rec.console_tail)
    assert rec.firmware == "uefi-secure"
    assert any("shimx64.efi" in n for n in rec.notes)  # shim became the fallback loader


def test_secure_boot_refuses_an_unsigned_loader(tmp_path: Path) -> None:
    store = _store(tmp_path, boot_disk("uefi").path)
    rec = drill(str(store), None, NullProgress(), FixedClock(),
                DrillOptions(timeout=400, secure_boot=True))
    assert not rec.passed and rec.failed_stage == FIRMWARE_STAGE
    assert "Access Denied" in rec.reason
    bios = _store(tmp_path / "b", boot_disk("bios-mbr").path)
    result = runner.invoke(app, ["image", "drill", str(bios), "--secure-boot"])
    assert result.exit_code == 2 and "Secure Boot is UEFI only" in result.output


def test_without_a_login_prompt_the_settled_screen_counts(tmp_path: Path) -> None:
    disk = boot_disk("bios-mbr")
    copy = tmp_path / "quiet.raw"
    shutil.copyfile(disk.path, copy)
    with FileReader(str(copy)) as reader:
        root = next(p for p in parse_table(reader).partitions
                    if p.index == disk.root_partition)
    ext_write(copy, root.start, {"/etc/no-getty": (b"", 0o644)})
    rec = drill(str(_store(tmp_path, copy)), None, NullProgress(), FixedClock(),
                DrillOptions(timeout=150))
    assert rec.passed, (rec.failed_stage, rec.reason, rec.console_tail)
    assert "login:" not in rec.console_tail
    assert rec.stages[-1].evidence == "the screen stayed the same for 5 s"


def test_drill_cli_and_image_list(tmp_path: Path) -> None:
    store = _store(tmp_path, boot_disk("bios-mbr").path)
    result = runner.invoke(app, ["image", "drill", str(store), "sys", "--timeout", "300"])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output and "kernel started" in result.output
    listed = runner.invoke(app, ["image", "list", str(store)])
    assert "last drill: passed" in listed.output
    data = json.loads(runner.invoke(app, ["image", "list", str(store), "--json"]).output)
    assert data[0]["last_drill"].startswith("passed, ")


def test_blank_boot_code_fails_at_the_first_stage(tmp_path: Path) -> None:
    disk = boot_disk("bios-mbr")
    store = _store(tmp_path, _damaged_copy(disk, tmp_path, 0, 440))
    result = runner.invoke(app, ["image", "drill", str(store), "sys", "--timeout", "300"])
    assert result.exit_code == 1, result.output
    assert f"FAILED at {FIRMWARE_STAGE}" in result.output and "boot code" in result.output
    rec = last_drill(open_target(str(store)), "sys")
    assert rec is not None and not rec.passed and rec.failed_stage == FIRMWARE_STAGE
    assert "last drill: FAILED at firmware" in runner.invoke(
        app, ["image", "list", str(store)]).output
    assert runner.invoke(app, ["image", "delete", str(store), "sys"]).exit_code == 0
    assert not list((store / "twofold-images").glob("drills/sys/*"))  # records go too


def test_status_shows_the_last_drill(tmp_path: Path, cli: Cli) -> None:
    disk = boot_disk("bios-mbr")
    store = tmp_path / "drive"
    store.mkdir()
    blank = _damaged_copy(disk, tmp_path, 0, 440)
    create(str(blank), str(store), "system-1", 3, None, False, NullProgress(), FixedClock())
    conf = f'[images.system]\nsource = "{blank}"\ntarget = "{store}"\n'
    _, text = cli(conf, "status")
    assert "system: last drill: never" in text, text
    rec = drill(str(store), None, NullProgress(), FixedClock(), DrillOptions(timeout=300))
    assert rec.failed_stage == FIRMWARE_STAGE
    _, text = cli(conf, "status", "--json")
    assert json_of(text)["jobs"][0]["last_drill"].startswith(f"FAILED at {FIRMWARE_STAGE}")


def test_damaged_root_fails_when_it_is_mounted(tmp_path: Path) -> None:
    disk = boot_disk("bios-gpt")
    with FileReader(str(disk.path)) as reader:
        root = next(p for p in parse_table(reader).partitions
                    if p.index == disk.root_partition)
    damaged = _damaged_copy(disk, tmp_path, root.start + 1024, 1024)  # the superblock
    store = _store(tmp_path, damaged)
    rec = drill(str(store), "sys", NullProgress(), FixedClock(), DrillOptions(timeout=300))
    assert not rec.passed and rec.failed_stage == ROOT_STAGE, (rec.reason, rec.console_tail)
    assert "kernel panic" in rec.reason
    assert rec.stages[1].seconds is not None  # the kernel did start


def test_a_partition_image_is_refused(tmp_path: Path) -> None:
    vol = tmp_path / "vol.img"
    with vol.open("wb") as f:
        f.truncate(8 << 20)
    store = _store(tmp_path, vol)
    result = runner.invoke(app, ["image", "drill", str(store), "sys"])
    assert result.exit_code == 2 and "not a whole disk" in result.output
    result = runner.invoke(app, ["image", "drill", str(store)])  # no disk image to pick
    assert result.exit_code == 2 and "no disk image" in result.output


def test_too_little_scratch_space_is_refused_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path, boot_disk("bios-mbr").path)
    before = _files(store)
    monkeypatch.setattr("twofold.image.drill.shutil.disk_usage",
                        lambda p: SimpleNamespace(free=1 << 20))
    result = runner.invoke(app, ["image", "drill", str(store), "--scratch", str(tmp_path)])
    assert result.exit_code == 2 and "needs about" in result.output and "--scratch" in \
        result.output
    result = runner.invoke(app, ["image", "drill", str(store), "--scratch", "/nonexistent"])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert _files(store) == before


def test_no_qemu_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path, boot_disk("bios-mbr").path)
    before = _files(store)
    monkeypatch.setattr("twofold.vm.qemu.shutil.which", lambda name: None)
    with pytest.raises(VmUnavailable) as err:
        drill(str(store), "sys", NullProgress(), FixedClock())
    assert "qemu-system-x86" in err.value.hint
    result = runner.invoke(app, ["image", "drill", str(store)])
    assert result.exit_code == 1 and "qemu-system-x86" in result.output
    assert _files(store) == before
