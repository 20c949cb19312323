"""The rescue ISO boots in QEMU to the guided restore's first screen (BIOS and UEFI from a
CD, UEFI with Secure Boot and Microsoft's keys, and written raw to a USB stick), and its
unattended mode restores an image from a store disk onto a third disk, which then boots.

The ISO comes from the `rescue_iso` fixture (conftest.py): built once and cached by its
content key, so a second run boots the cached ISO.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.bootdisks import boot_disk
from tests.rescue.conftest import CACHE, Clock
from twofold.core.progress import NullProgress
from twofold.rescue import recipe
from twofold.vm.qemu import FAIL_PATTERNS, Drive, Vm, VmSpec

FIRST_SCREEN = r"twofold rescue [0-9.]+: guided restore"
BOOT_TIMEOUT = 400  # seconds under TCG on a loaded machine (it takes about 40 alone)
MiB = 1 << 20
# The first test also builds the ISO when the cache lacks it (10 minutes on a busy machine).
pytestmark = [pytest.mark.root, pytest.mark.timeout(2400)]


def _boot(vm: Vm, pattern: str) -> str:
    vm.start()
    hit = vm.wait_for_text({"screen": pattern, **FAIL_PATTERNS}, BOOT_TIMEOUT)
    tail = vm.serial_text()[-3000:]
    assert hit is not None, f"nothing after {BOOT_TIMEOUT} s:\n{tail}"
    assert hit.name == "screen", f"{hit.name}:\n{tail}"
    return vm.serial_text()


@pytest.mark.slow
@pytest.mark.parametrize(("firmware", "medium"), [
    ("bios", "cdrom"), ("uefi", "cdrom"), ("uefi-secure", "cdrom"), ("bios", "usb"),
    ("uefi-secure", "usb")])
def test_rescue_iso_boots_to_the_guide(rescue_iso: Path, firmware: str, medium: str,
                                       tmp_path: Path) -> None:
    spec = VmSpec([Drive(rescue_iso, medium, snapshot=medium == "usb")],
                  firmware=firmware, memory_mb=1024, accel="tcg")
    with Vm(spec, tmp_path / "vm") as vm:
        text = _boot(vm, FIRST_SCREEN + r"\s+firmware: [^\r\n]*\r?\n")
        if firmware == "uefi-secure":
            assert "Secure Boot on" in text, text[-3000:]
        elif firmware == "bios":
            assert "firmware: BIOS" in text, text[-3000:]


class KernelVm(Vm):
    """A machine started with -kernel/-initrd (QEMU's own loader takes boot index 0, so
    the drives get none)."""

    def command(self, accel: str) -> list[str]:
        return [re.sub(r",bootindex=\d+", "", a) for a in super().command(accel)]


def _extract(iso: Path, inside: str, out: Path) -> Path:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", inside,
                    str(out)], check=True, capture_output=True)
    return out


@pytest.mark.slow
def test_unattended_restore_from_a_store_disk_boots(rescue_iso: Path, tmp_path: Path) -> None:
    from twofold.image.create import create

    disk = boot_disk("bios-mbr")
    store = tmp_path / "store"
    store.mkdir()
    create(str(disk.path), str(store), "pc-1", 3, None, False, NullProgress(), Clock())
    store_disk = tmp_path / "store.raw"
    with store_disk.open("wb") as f:
        f.truncate(disk.size + 64 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "BACKUP", "-d", str(store),
                    str(store_disk)], check=True, capture_output=True)
    target = tmp_path / "target.raw"
    with target.open("wb") as f:
        f.truncate(disk.size + 32 * MiB)
    kernel = _extract(rescue_iso, "/live/vmlinuz", tmp_path / "vmlinuz")
    initrd = _extract(rescue_iso, "/live/initrd.img", tmp_path / "initrd.img")
    append = (f"{recipe.CMDLINE} twofold.store=auto twofold.image=latest "
              "twofold.disk=/dev/vdb twofold.yes=1 twofold.after=poweroff")
    spec = VmSpec([Drive(store_disk, "virtio"), Drive(target, "virtio"),
                   Drive(rescue_iso, "cdrom")], memory_mb=1024, accel="tcg",
                  extra=["-kernel", str(kernel), "-initrd", str(initrd), "-append", append])
    with KernelVm(spec, tmp_path / "rescue-vm") as vm:
        text = _boot(vm, r"unattended restore finished with exit code \d+")
        assert "unattended restore finished with exit code 0" in text, text[-3000:]
        assert "read back and verified" in text
        assert vm.wait_exit(120) is not None, "the rescue system did not power off"
    with Vm(VmSpec([Drive(target)], firmware="bios", accel="tcg"), tmp_path / "vm") as vm:
        _boot(vm, f"TWOFOLD-TEST-INIT up, root {disk.marker}")


def test_unchanged_rebuild_comes_from_the_cache(rescue_iso: Path, tmp_path: Path) -> None:
    if os.environ.get("TWOFOLD_RESCUE_ISO"):
        pytest.skip("TWOFOLD_RESCUE_ISO names an ISO built elsewhere")
    from twofold.rescue.build import build

    again = tmp_path / "again.iso"
    r = build(str(again), None, CACHE, NullProgress(), Clock())
    assert r.cached, r.stages
    assert [name for name, _ in r.stages] == ["wheels", "publish"]
    assert again.read_bytes() == rescue_iso.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["again.iso"]  # no temp file left
