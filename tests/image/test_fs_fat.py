"""FAT12/16/32 used-cluster maps against fsck.fat, and a restore of only the used ranges
that must pass fsck.fat and give every file back (through mtools, no root needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twofold.fsinfo.blockio import FileReader
from twofold.fsinfo.fsbitmap import detect, fat

from .conftest import blkid, copy_used_and_check, run, tree_digest, used_map

CASES = {
    "fat12": (8 << 20, ["-F", "12"]),
    "fat16": (64 << 20, ["-F", "16"]),
    "fat32": (64 << 20, ["-F", "32", "-s", "1"]),
}
DELETED = ("d0/file09.bin", "d2/deep/file08.bin", "d1/file01.bin")


def make_fat(image: Path, opts: list[str], size: int, tree: Path) -> Path:
    """A FAT image holding `tree`; some files deleted, then a file written over the
    holes so its cluster chain is fragmented. Returns the tree it should now hold."""
    with open(image, "wb") as f:
        f.truncate(size)
    run("mkfs.vfat", *opts, "-n", "TFLABEL", image)
    run("mcopy", "-s", "-i", image, *sorted(tree.iterdir()), "::/")
    for rel in DELETED:
        run("mdel", "-i", image, f"::/{rel}")
    late = image.parent / "late.bin"
    late.write_bytes(bytes(range(256)) * 800)  # 200 KiB: fills some holes, not all
    run("mcopy", "-i", image, late, "::/late.bin")
    return late


def _fsck_counts(image: Path) -> tuple[int, int, int]:
    """(data area offset, cluster size, used clusters) as fsck.fat -v reports them."""
    out = run("fsck.fat", "-v", "-n", image).stdout
    data = re.search(r"Data area starts at byte (\d+)", out)
    cluster = re.search(r"(\d+) bytes per cluster", out)
    used = re.search(r"\d+ files, (\d+)/\d+ clusters", out)
    assert data and cluster and used, out
    return int(data.group(1)), int(cluster.group(1)), int(used.group(1))


@pytest.mark.parametrize("kind", list(CASES))
def test_fat_used_clusters_and_restorable(kind: str, sample_tree: Path, tmp_path: Path) -> None:
    size, opts = CASES[kind]
    image = tmp_path / "fs.img"
    late = make_fat(image, opts, size, sample_tree)
    with FileReader(image) as reader:
        assert detect(reader) == kind
    um = used_map(image)
    assert um.fstype == kind and not um.dirty

    data_offset, cluster, used_clusters = _fsck_counts(image)
    assert um.block_size == cluster
    assert um.extents[0][0] == 0 and um.extents[0][1] >= data_offset
    assert um.used_bytes == data_offset + used_clusters * cluster
    assert len(um.extents) > 1, "the deletions should leave free holes between used runs"
    ids = blkid(image)
    assert um.label == ids["LABEL"] == "TFLABEL"
    assert um.uuid == ids["UUID"]

    copy = copy_used_and_check(image, um.extents, tmp_path, ["fsck.fat", "-n"])
    out = tmp_path / "out"
    out.mkdir()
    run("mcopy", "-s", "-n", "-i", copy, "::/*", out)
    want = tree_digest(sample_tree)
    for rel in DELETED:
        want.pop(rel)
    want["late.bin"] = tree_digest(late.parent)["late.bin"]
    assert tree_digest(out) == want


def test_small_fat32_is_fat32(tmp_path: Path) -> None:
    """FAT32 with fewer clusters than the spec's minimum (mkfs.vfat warns but makes it,
    small EFI partitions have it, Linux mounts it): the BPB, not the count, says FAT32."""
    image = tmp_path / "small.img"
    with open(image, "wb") as f:
        f.truncate(20 << 20)
    run("mkfs.vfat", "-F", "32", image)
    with FileReader(image) as reader:
        assert detect(reader) == "fat32"
    um = used_map(image)
    assert um.fstype == "fat32" and not um.dirty, um.dirty_reason
    data_offset, cluster, used_clusters = _fsck_counts(image)
    assert um.used_bytes == data_offset + used_clusters * cluster


@pytest.mark.parametrize("kind", ["fat16", "fat32"])
def test_fat_dirty_bits_detected(kind: str, tmp_path: Path) -> None:
    size, opts = CASES[kind]
    image = tmp_path / "fs.img"
    with open(image, "wb") as f:
        f.truncate(size)
    run("mkfs.vfat", *opts, image)
    clean = image.read_bytes()
    assert not used_map(image).dirty

    flag_offset = 37 if kind == "fat16" else 65  # the dirty bit Linux sets while mounted
    data = bytearray(clean)
    data[flag_offset] |= 0x01
    image.write_bytes(data)
    assert "dirty bit" in run("fsck.fat", "-n", image, check=False).stdout.lower()
    um = used_map(image)
    assert um.dirty and "dirty bit" in um.dirty_reason

    geo = fat.parse_boot_sector(clean[:512])
    data = bytearray(clean)
    entry1 = geo.reserved_sectors * geo.sector_size + (2 if kind == "fat16" else 4)
    data[entry1 + (1 if kind == "fat16" else 3)] &= 0x7F if kind == "fat16" else 0xF7
    image.write_bytes(data)  # Windows' "not cleanly shut down" bit in FAT[1]
    um = used_map(image)
    assert um.dirty and "clean-shutdown" in um.dirty_reason


def test_fat12_entries_unpack() -> None:
    # entries 0..3 = 0xFF8, 0xFFF, 0x003, 0xABC packed as 12-bit little-endian pairs
    raw = bytes([0xF8, 0xFF, 0xFF, 0x03, 0xC0, 0xAB])
    assert fat.fat_entries(raw, "fat12", 4).tolist() == [0xFF8, 0xFFF, 0x003, 0xABC]
