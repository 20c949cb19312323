"""The LVM view's arithmetic: a logical volume's ranges placed on its physical volume, and
the disk read with snapshot and metadata ranges taken from elsewhere."""

from __future__ import annotations

from pathlib import Path

from twofold.fsinfo.blockio import BytesReader, FileReader
from twofold.fsinfo.lvm import LogicalVolume
from twofold.image.lvmsnap import OverlayReader, _on_pv


def test_lv_ranges_map_through_its_segments() -> None:
    lv = LogicalVolume("vg", "root", "/dev/vg/root", 300,
                       [(0, 1000, 100), (100, 5000, 200)])  # two segments, apart
    assert _on_pv(lv, [(0, 10), (90, 20), (250, 50)]) == \
        [(1000, 10), (1090, 10), (5000, 10), (5150, 50)]


def test_overlay_reads_each_byte_from_where_it_is_taken(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(range(256)) * 4)
    with FileReader(disk) as base:
        view = OverlayReader(base, [(10, 5, BytesReader(b"ABCDE"), 0),
                                    (100, 4, BytesReader(b"xxWXYZ"), 2)])
        want = bytearray(disk.read_bytes())
        want[10:15] = b"ABCDE"
        want[100:104] = b"WXYZ"
        assert view.pread(0, 1024) == bytes(want)
        assert view.pread(12, 90) == bytes(want[12:102])
        assert view.pread(1020, 100) == bytes(want[1020:])  # short only at the end
