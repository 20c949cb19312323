"""MBR and GPT tables read against sfdisk, table bytes and gaps tiling the disk, damaged
GPT copies, and growing a GPT for a larger disk checked with sgdisk and sfdisk."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from twofold.fsinfo.blockio import FileReader, LayoutError
from twofold.fsinfo.gptgrow import grow_gpt
from twofold.fsinfo.parttable import PartitionTable, parse_table

from .conftest import IS_ROOT, NOT_ROOT_REASON, assert_gpt_clean, loop_device, run, sfdisk_json

MiB = 1 << 20
GPT_SCRIPT = """label: gpt
size=10MiB, type=uefi, name="EFI system"
size=30MiB, type=linux, name="root"
type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="data"
"""
MBR_SCRIPT = """label: dos
size=10MiB, type=c, bootable
size=20MiB, type=83
type=5
size=15MiB, type=83
size=10MiB, type=7
type=82
"""


def make_disk(path: Path, size: int, script: str) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    run("sfdisk", "-q", path, stdin=script)
    return path


def read_table(path: Path) -> PartitionTable:
    with FileReader(path) as reader:
        return parse_table(reader)


def assert_tiles(table: PartitionTable) -> None:
    """Partitions, table bytes and gaps cover the disk exactly once."""
    pieces = sorted(
        [(p.start, p.size) for p in table.partitions if not p.container]
        + list(table.table_ranges)
        + list(table.gaps)
    )
    pos = 0
    for start, length in pieces:
        assert start == pos, f"hole or overlap at {pos}: {pieces}"
        pos = start + length
    assert pos == table.disk_size


def assert_same_as_sfdisk(table: PartitionTable, js: dict[str, Any]) -> None:
    ss = js["sectorsize"]
    assert table.sector_size == ss
    assert table.kind == {"gpt": "gpt", "dos": "mbr"}[js["label"]]
    assert table.disk_id == js["id"]
    got = {p.index: p for p in table.partitions}
    assert len(got) == len(js["partitions"])
    for part in js["partitions"]:
        mine = got[int(part["node"].rsplit("img", 1)[-1].lstrip("p"))]
        assert (mine.start, mine.size) == (part["start"] * ss, part["size"] * ss)
        if js["label"] == "gpt":
            assert mine.type == part["type"] and mine.uuid == part["uuid"]
            assert mine.name == part.get("name", "")
        else:
            assert int(mine.type, 16) == int(part["type"], 16)
            assert bool(mine.attrs & 0x80) == part.get("bootable", False)


def test_gpt_matches_sfdisk(tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.img", 100 * MiB, GPT_SCRIPT)
    table = read_table(disk)
    js = sfdisk_json(disk)
    assert_same_as_sfdisk(table, js)
    assert table.problems == ()
    assert table.gpt is not None
    assert table.gpt.first_usable_lba == js["firstlba"]
    assert table.gpt.last_usable_lba == js["lastlba"]
    assert_tiles(table)
    ss = table.sector_size
    last = table.disk_size // ss - 1
    assert table.table_ranges == (
        (0, ss),
        (ss, ss),
        (2 * ss, 32 * ss),
        ((last - 32) * ss, 32 * ss),
        (last * ss, ss),
    )
    # the boot gap after the entry array, before the first partition
    assert table.gaps[0] == (34 * ss, js["partitions"][0]["start"] * ss - 34 * ss)
    assert table.min_disk_size == table.partitions[-1].end + 33 * ss


def test_mbr_with_logical_partitions_matches_sfdisk(tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.img", 100 * MiB, MBR_SCRIPT)
    table = read_table(disk)
    assert_same_as_sfdisk(table, sfdisk_json(disk))
    assert [p.index for p in table.partitions] == [1, 2, 3, 5, 6, 7]
    assert [p.container for p in table.partitions] == [False, False, True, False, False, False]
    assert len(table.table_ranges) == 4  # the MBR and one EBR per logical partition
    assert table.gaps[0] == (512, MiB - 512)  # the boot gap (GRUB's core.img lives here)
    assert_tiles(table)


def test_stale_gpt_header_under_an_mbr_is_ignored(tmp_path: Path) -> None:
    gpt = make_disk(tmp_path / "gpt.img", 100 * MiB, GPT_SCRIPT)
    disk = make_disk(tmp_path / "disk.img", 100 * MiB, MBR_SCRIPT)
    with open(gpt, "rb") as src, open(disk, "r+b") as dst:
        src.seek(512)
        dst.seek(512)
        dst.write(src.read(512))  # left behind by a GPT the MBR replaced
    assert sfdisk_json(disk)["label"] == "dos"
    assert read_table(disk).kind == "mbr"


@pytest.mark.parametrize(
    "mkfs",
    [
        ["mkfs.ext4", "-q"],
        ["mkfs.vfat", "-F", "16"],
        ["mkfs.exfat"],
        ["mkfs.ntfs", "-q", "-F", "-f"],
        None,
    ],
)
def test_bare_volume_has_no_table(mkfs: list[str] | None, tmp_path: Path) -> None:
    image = tmp_path / "vol.img"
    with open(image, "wb") as f:
        f.truncate(64 * MiB)
    if mkfs is not None:
        run(*mkfs, image)
    table = read_table(image)
    assert table.kind == "none" and table.partitions == ()
    assert table.gaps == ((0, 64 * MiB),)


def _grow_file(path: Path, new_size: int) -> list[tuple[int, bytes]]:
    with open(path, "r+b") as f:
        f.truncate(new_size)
    with FileReader(path) as reader:
        writes = grow_gpt(reader, new_size)
    with open(path, "r+b") as f:
        for offset, data in writes:
            f.seek(offset)
            f.write(data)
    return writes


def test_gpt_grow_to_larger_disk(tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.img", 100 * MiB, GPT_SCRIPT)
    before = sfdisk_json(disk)
    big = tmp_path / "big.img"
    shutil.copy(disk, big)
    with open(big, "r+b") as f:
        f.truncate(250 * MiB)
    assert "No problems found" not in run("sgdisk", "-v", big, check=False).stdout
    assert read_table(big).problems  # the backup is not at the end
    _grow_file(big, 250 * MiB)

    assert_gpt_clean(big)
    after = sfdisk_json(big)
    assert after["partitions"] == [
        {**p, "node": p["node"].replace("disk.img", "big.img")} for p in before["partitions"]
    ]
    assert after["lastlba"] == 250 * MiB // 512 - 34
    table = read_table(big)
    assert table.problems == () and table.disk_size == 250 * MiB
    assert_tiles(table)
    with open(big, "rb") as f:
        f.seek(100 * MiB - 512)
        assert f.read(8) != b"EFI PART", "the old backup header should be wiped"


def test_gpt_grow_refuses_a_disk_too_small(tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.img", 100 * MiB, GPT_SCRIPT)
    need = read_table(disk).min_disk_size
    with FileReader(disk) as reader, pytest.raises(LayoutError, match=f"{need} needed"):
        grow_gpt(reader, need - 512)


@pytest.mark.parametrize("damage", ["header", "entries"])
def test_gpt_damaged_primary_uses_backup_and_grow_repairs(damage: str, tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.img", 100 * MiB, GPT_SCRIPT)
    good = read_table(disk)
    with open(disk, "r+b") as f:
        f.seek(512 + 40 if damage == "header" else 1024 + 40)
        f.write(b"\xff\xff")
    damaged = read_table(disk)
    assert damaged.partitions == good.partitions
    assert any("primary GPT unusable" in p for p in damaged.problems)
    assert damaged.table_ranges == good.table_ranges
    assert damaged.min_disk_size == good.min_disk_size
    _grow_file(disk, 120 * MiB)
    assert_gpt_clean(disk)
    assert read_table(disk).partitions == good.partitions


@pytest.mark.root
def test_gpt_4k_sectors_on_loop_device(tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip(NOT_ROOT_REASON)
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(100 * MiB)
    with loop_device(disk, sector_size=4096) as dev:
        run("sfdisk", "-q", dev, stdin=GPT_SCRIPT)
        js = sfdisk_json(dev)
        with FileReader(dev) as reader:
            assert reader.sector_size == 4096
            table = parse_table(reader)
    assert js["sectorsize"] == 4096
    for part, mine in zip(js["partitions"], table.partitions, strict=True):
        assert (mine.start, mine.size) == (part["start"] * 4096, part["size"] * 4096)
    assert read_table(disk).sector_size == 4096  # found on the plain file too
    _grow_file(disk, 150 * MiB)
    with loop_device(disk, sector_size=4096) as dev:
        assert_gpt_clean(dev)
