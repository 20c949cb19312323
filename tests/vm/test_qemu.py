"""The QEMU runner: firmware text is seen, screenshots are PNGs, no QEMU is left behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from twofold.vm.qemu import OVMF_DIR, Drive, Vm, VmSpec, VmUnavailable, find_ovmf

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="QEMU is not installed (Debian package qemu-system-x86)")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_bios_with_no_disk_says_so_and_takes_a_screenshot(tmp_path: Path) -> None:
    with Vm(VmSpec(drives=[], accel="tcg")) as vm:
        vm.start()
        assert vm.proc is not None
        pid = vm.proc.pid
        hit = vm.wait_for_text({"nothing": r"No bootable device", "booted": r"0000:7c00"}, 60)
        assert hit is not None and hit.name == "nothing"
        png = tmp_path / "screen.png"
        assert vm.screendump(png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _gone(pid)


def test_wait_for_text_gives_up_when_qemu_exits(tmp_path: Path) -> None:
    bad = tmp_path / "missing.raw"
    with Vm(VmSpec(drives=[Drive(bad)], accel="tcg")) as vm:
        vm.start()
        assert vm.wait_for_text({"never": r"never printed"}, 60) is None
        assert not vm.running()
        assert "missing.raw" in vm.error_text()


@pytest.mark.skipif(not (OVMF_DIR / "OVMF_CODE_4M.fd").exists(),
                    reason="OVMF is not installed (Debian package ovmf)")
def test_uefi_firmware_reports_its_boot_attempts() -> None:
    with Vm(VmSpec(drives=[], firmware="uefi", accel="tcg")) as vm:
        vm.start()
        hit = vm.wait_for_text({"bds": r"BdsDxe: (loading|failed|starting)"}, 120)
        assert hit is not None


def test_missing_firmware_names_the_package(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr("twofold.vm.qemu.OVMF_DIR", tmp_path)
    with pytest.raises(VmUnavailable) as err:
        find_ovmf("uefi")
    assert "ovmf" in err.value.hint
