"""LVM in a QEMU guest running Debian's kernel (this machine's kernel has no device
mapper): the rescue system boots with `twofold.script=`, makes a volume group with a
mounted logical volume and a writer, and runs `twofold image create` of the whole disk
into a store disk. The image holds the volume's files (checked here, read from the
restored disk), no snapshot is left, a group without free space is refused clearly, and
the snapshot of a create killed with -9 is removed by `twofold image cleanup`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.drives import run
from tests.imaging.conftest import FixedClock
from tests.rescue.conftest import rescue_iso
from tests.rescue.test_rescue_boot import KernelVm, _extract
from twofold.core.progress import NullProgress
from twofold.image.manifest import parse_manifest
from twofold.image.restore import restore
from twofold.rescue import recipe
from twofold.vm.qemu import Drive, VmSpec

__all__ = ["rescue_iso"]  # the fixture, shared with the rescue boot tests
MiB = 1 << 20
pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(3600)]

SCRIPT = r"""
exec > /dev/console 2>&1
modprobe dm-mod; modprobe dm-snapshot
echo 'label: gpt
size=120MiB, type=E6D6D379-F507-44C2-A23C-238F2A3DF928' | sfdisk -q /dev/vda
udevadm settle
pvcreate -q /dev/vda1 && vgcreate -q tfvg /dev/vda1 &&
  lvcreate -q -y -L 48M -n root tfvg && lvcreate -q -y -L 16M -n data tfvg
udevadm settle
mkfs.ext4 -q -L lvroot /dev/tfvg/root && mkfs.ext4 -q -L lvdata /dev/tfvg/data
mkdir -p /mnt/root /mnt/store
mount /dev/tfvg/root /mnt/root && mount /dev/vdb /mnt/store
for i in $(seq 1 150); do head -c $((i * 300)) /dev/urandom > /mnt/root/f$i; done
mkdir /mnt/root/sub && head -c 6000000 /dev/urandom > /mnt/root/sub/big
( n=0; while :; do n=$(((n + 1) % 10)); yes $n | head -c 300000 > /mnt/root/churn; done ) &
WRITER=$!
sleep 1
echo "LAYOUT-PV $(pvs --noheadings --units b --nosuffix -o pe_start,vg_extent_size /dev/vda1)"
echo "LAYOUT-LV $(lvs --noheadings --segments -o seg_pe_ranges tfvg/root)"
twofold image create /dev/vda --to /mnt/store --name lvm
echo "CREATE-RC $?"
kill $WRITER; wait $WRITER 2>/dev/null
echo "LEFT [$(echo $(lvs --noheadings -o lv_name tfvg))]"
(cd /mnt/root && find . -type f ! -name churn | sort | xargs sha256sum > /mnt/store/want.txt)

lvcreate -q -y -l 100%FREE -n filler tfvg
twofold image create /dev/vda --to /mnt/store --name nospace
echo "NOSPACE-RC $?"
lvremove -q -f tfvg/filler

twofold image create /dev/vda --to /mnt/store --name killed &
PID=$!
while ! lvs --noheadings -o lv_name tfvg | grep -q twofold-pid; do sleep 0.1; done
kill -9 $PID; wait $PID 2>/dev/null
sleep 2
echo "AFTER-KILL [$(echo $(lvs --noheadings -o lv_name tfvg))]"
twofold image cleanup
echo "CLEANUP-RC $?"
echo "AFTER-CLEANUP [$(echo $(lvs --noheadings -o lv_name tfvg))]"
umount /mnt/store
"""


def _between(text: str, key: str) -> str:
    m = re.search(rf"{key} ([^\r\n]*)", text)
    assert m is not None, f"no {key} in:\n{text[-4000:]}"
    return m.group(1).strip()


def test_mounted_lvm_volume_is_imaged_from_a_snapshot_in_a_guest(rescue_iso: Path,
                                                                  tmp_path: Path) -> None:
    work = tmp_path / "script"
    work.mkdir()
    (work / "run.sh").write_text(SCRIPT)
    script = tmp_path / "script.raw"
    run("truncate", "-s", "8M", script)
    run("mkfs.ext4", "-q", "-F", "-L", "TFSCRIPT", "-d", work, script)
    disk, store = tmp_path / "disk.raw", tmp_path / "store.raw"
    run("truncate", "-s", "128M", disk)
    run("truncate", "-s", "256M", store)
    run("mkfs.ext4", "-q", "-F", "-L", "TFSTORE", store)
    kernel = _extract(rescue_iso, "/live/vmlinuz", tmp_path / "vmlinuz")
    initrd = _extract(rescue_iso, "/live/initrd.img", tmp_path / "initrd.img")
    spec = VmSpec([Drive(disk, "virtio"), Drive(store, "virtio"), Drive(script, "virtio"),
                   Drive(rescue_iso, "cdrom")], memory_mb=1024, accel="tcg",
                  extra=["-kernel", str(kernel), "-initrd", str(initrd), "-append",
                         f"{recipe.CMDLINE} twofold.script=TFSCRIPT"])
    with KernelVm(spec, tmp_path / "vm") as vm:
        vm.start()
        hit = vm.wait_for_text({"done": r"twofold script finished with exit code \d+"}, 2400)
        text = vm.serial_text()
        assert hit is not None, text[-4000:]
    assert _between(text, "CREATE-RC") == "0", text[-6000:]
    assert "partition 1: snapshot (LVM: root), blocks" in text, text[-6000:]
    assert _between(text, "LEFT") == "[data root]"  # the snapshot is gone
    assert _between(text, "NOSPACE-RC") == "1"
    assert "the volume group tfvg has no free space for a snapshot of tfvg/root" in text
    assert re.search(r"AFTER-KILL \[.*twofold-pid", text), text[-3000:]
    assert _between(text, "CLEANUP-RC") == "0"
    assert "removed LVM snapshot tfvg/twofold-pid" in text
    assert _between(text, "AFTER-CLEANUP") == "[data root]"

    pe_start, extent = (int(x) for x in _between(text, "LAYOUT-PV").split())
    first = int(re.fullmatch(r"/dev/vda1:(\d+)-\d+", _between(text, "LAYOUT-LV"))[1])
    mnt = tmp_path / "store"
    mnt.mkdir()
    run("mount", "-o", "ro,loop", store, mnt)
    try:
        want = (mnt / "want.txt").read_text()
        m = parse_manifest((mnt / "twofold-images/images/lvm.json").read_bytes(), "lvm")
        assert [a.number for a in m.areas if a.role == "partition"] == [1]
        out = tmp_path / "restored.raw"
        restore(str(mnt), "lvm", str(out), None, NullProgress(), FixedClock())
    finally:
        run("umount", mnt)
    part_start = 2048 * 512  # sfdisk's first partition
    with out.open("rb") as f:
        f.seek(part_start)
        head = f.read(pe_start)
        f.seek(part_start + pe_start + first * extent)
        lv = f.read(48 * MiB)
    assert b"tfvg" in head and b"twofold-pid" not in head  # metadata from before the snapshot
    root = tmp_path / "root.ext4"
    root.write_bytes(lv)
    run("e2fsck", "-f", "-n", root)
    seen = tmp_path / "seen"
    seen.mkdir()
    run("mount", "-o", "ro,loop", root, seen)
    try:
        got = subprocess.run("find . -type f ! -name churn | sort | xargs sha256sum",
                             shell=True, cwd=seen, capture_output=True, text=True,
                             check=True).stdout
        churn = (seen / "churn").read_bytes()
    finally:
        run("umount", seen)
    assert got == want
    assert len(churn) <= 300_000 and len(set(churn) - {ord("\n")}) <= 1  # one version
