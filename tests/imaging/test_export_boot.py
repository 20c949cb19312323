"""Exported disks boot: a BIOS+GPT test disk exported as qcow2, a BIOS+MBR one as VHDX and
a UEFI one as VMDK (its ESP given the fallback loader, as restore does) each start in QEMU
until their init's marker shows on the serial console."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.bootdisks import boot_disk
from tests.imaging.conftest import FixedClock
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.export import FORMATS, export
from twofold.vm.qemu import FAIL_PATTERNS, Drive, Vm, VmSpec


@pytest.mark.skipif(shutil.which("qemu-img") is None,
                    reason="qemu-img is missing (Debian package qemu-utils)")
@pytest.mark.parametrize(("kind", "fmt"), [("bios-gpt", "qcow2"), ("bios-mbr", "vhdx"),
                                               ("uefi", "vmdk")])
def test_exported_disk_boots(kind: str, fmt: str, tmp_path: Path) -> None:
    disk = boot_disk(kind)
    store = tmp_path / "drive"
    store.mkdir()
    create(str(disk.path), str(store), "sys", 3, None, False, NullProgress(), FixedClock())
    out = tmp_path / f"sys.{fmt}"
    r = export(str(store), "sys", fmt, str(out), NullProgress(), FixedClock())
    if kind == "uefi":  # the test disk holds only EFI/debian/grubx64.efi, as installed
        assert "added the UEFI fallback loader" in r.boot_note
    else:
        assert r.boot_note == ""
    spec = VmSpec([Drive(out, fmt=FORMATS[fmt][0])], firmware=disk.firmware, accel="tcg")
    with Vm(spec) as vm:
        vm.start()
        hit = vm.wait_for_text({"marker": f"TWOFOLD-TEST-INIT up, root {disk.marker}",
                                **FAIL_PATTERNS}, 300)
        assert hit is not None, vm.serial_text()[-2000:]
        assert hit.name == "marker", vm.serial_text()[-2000:]
