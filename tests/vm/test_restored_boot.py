"""Restored disks boot: each bootable test disk (GRUB on BIOS+MBR, BIOS+GPT, UEFI) is
imaged, restored to a larger disk file and started in QEMU until its init's marker shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bootdisks import KINDS, boot_disk
from tests.imaging.conftest import FixedClock
from twofold.core.progress import NullProgress
from twofold.fsinfo.efiboot import FALLBACK, ensure_fallback_loader, esp_files
from twofold.image.create import create
from twofold.image.restore import restore
from twofold.vm.qemu import FAIL_PATTERNS, Drive, Vm, VmSpec

MiB = 1 << 20


@pytest.mark.parametrize("kind", KINDS)
def test_restored_disk_boots(kind: str, tmp_path: Path) -> None:
    disk = boot_disk(kind)
    store = tmp_path / "drive"
    store.mkdir()
    clock = FixedClock()
    create(str(disk.path), str(store), "sys", 3, None, False, NullProgress(), clock)
    bigger = tmp_path / "bigger.raw"
    with bigger.open("wb") as f:
        f.truncate(disk.size + 32 * MiB)
    result = restore(str(store), "sys", str(bigger), None, NullProgress(), clock)
    if kind == "uefi":  # the test disk holds only \EFI\debian\grubx64.efi, as installed
        assert "BOOTX64.EFI" in result.boot_note
        assert ensure_fallback_loader(str(bigger)).status == "present"
    else:
        assert result.boot_note == ""
    with Vm(VmSpec([Drive(bigger)], firmware=disk.firmware, accel="tcg")) as vm:
        vm.start()
        hit = vm.wait_for_text({"marker": f"TWOFOLD-TEST-INIT up, root {disk.marker}",
                                **FAIL_PATTERNS}, 300)
        assert hit is not None, vm.serial_text()[-2000:]
        assert hit.name == "marker", vm.serial_text()[-2000:]


def test_fallback_loader_copied_from_the_distribution(tmp_path: Path) -> None:
    disk = boot_disk("uefi")
    copy = tmp_path / "copy.raw"
    copy.write_bytes(disk.path.read_bytes())
    first = ensure_fallback_loader(str(copy))
    assert first.status == "added" and first.copied == [f"EFI/debian/grubx64.efi -> {FALLBACK}"]
    assert ensure_fallback_loader(str(copy)).status == "present"
    assert ensure_fallback_loader(str(boot_disk("bios-gpt").path)).status == "no-esp"


def test_an_esp_without_any_loader_says_what_to_do(tmp_path: Path) -> None:
    disk = boot_disk("uefi")
    copy = tmp_path / "copy.raw"
    copy.write_bytes(disk.path.read_bytes())
    from tests.drives import run
    run("mdel", "-i", f"{copy}@@{MiB}", "::/EFI/debian/grubx64.efi")
    assert not [f for f in esp_files(str(copy), MiB) if f.endswith(".efi")]
    got = ensure_fallback_loader(str(copy))
    assert got.status == "missing" and "grub-install --removable" in got.note
