"""exFAT used-cluster maps against partclone.exfat, and a restore of only the used ranges
that must pass fsck.exfat and (as root, mounted with exfat-fuse) give every file back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from twofold.fsinfo.blockio import FileReader
from twofold.fsinfo.fsbitmap import detect, exfat

from .conftest import (
    IS_ROOT,
    NOT_ROOT_REASON,
    blkid,
    clip,
    copy_used_and_check,
    loop_device,
    mounted,
    partclone_domain,
    run,
    tree_digest,
    used_map,
)

SIZE = 64 << 20
DELETED = ("d0/file09.bin", "d2/deep/file08.bin")


def make_exfat(image: Path) -> None:
    with open(image, "wb") as f:
        f.truncate(SIZE)
    run("mkfs.exfat", "-L", "TFLABEL", image)


def check_exfat(image: Path, tmp_path: Path) -> Path:
    """Check the UsedMap of `image` against partclone and blkid; return a copy holding only
    the used ranges, already checked with fsck.exfat."""
    with FileReader(image) as reader:
        assert detect(reader) == "exfat"
        boot = exfat.parse_boot(reader.pread(0, 512))
    um = used_map(image)
    assert um.fstype == "exfat" and not um.dirty
    heap = boot.cluster_offset(2)
    heap_end = boot.cluster_offset(boot.cluster_count + 2)
    domain, _ = partclone_domain("exfat", image, tmp_path / "domain.log")
    # partclone keeps everything before the cluster heap; inside it we agree exactly
    assert clip(um.extents, heap, heap_end) == clip(domain, heap, heap_end)
    ss = boot.sector_size
    fats = (boot.fat_offset * ss, boot.fat_count * boot.fat_length * ss)
    assert clip(um.extents, 0, heap) == tuple(sorted([(0, 24 * ss), fats])), (
        "before the heap: the boot regions and the FATs only"
    )
    blk = blkid(image)
    assert um.label == blk["LABEL"] == "TFLABEL" and um.uuid == blk["UUID"]
    return copy_used_and_check(image, um.extents, tmp_path, ["fsck.exfat", "-n"], "clean")


def test_exfat_empty_used_clusters(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_exfat(image)
    check_exfat(image, tmp_path)
    # the filled case needs a loop device and exfat-fuse (root): test_exfat_filled_restorable


@pytest.mark.root
def test_exfat_filled_restorable(sample_tree: Path, tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip(f"filling exFAT {NOT_ROOT_REASON}")
    image = tmp_path / "fs.img"
    make_exfat(image)
    with loop_device(image) as dev, mounted(["mount.exfat-fuse", dev], tmp_path / "mnt") as mnt:
        for item in sample_tree.iterdir():
            if item.is_dir():
                shutil.copytree(item, mnt / item.name)
            else:
                shutil.copy(item, mnt / item.name)
        for rel in DELETED:
            (mnt / rel).unlink()
        live = tmp_path / "live.img"
        live.write_bytes(image.read_bytes())  # an image taken while mounted
    want = tree_digest(sample_tree)
    for rel in DELETED:
        want.pop(rel)
    assert used_map(live).dirty  # exfat-fuse sets VolumeDirty while mounted

    copy = check_exfat(image, tmp_path)
    assert len(used_map(image).extents) > 3, "the deletions should leave holes"
    with (
        loop_device(copy) as dev,
        mounted(["mount.exfat-fuse", "-o", "ro", dev], tmp_path / "back") as back,
    ):
        got = tree_digest(back)
    assert got == want


def test_exfat_dirty_flag_detected(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_exfat(image)
    with open(image, "r+b") as f:
        f.seek(106)
        f.write(b"\x02\x00")  # VolumeDirty (not covered by the boot-region checksum)
    um = used_map(image)
    assert um.dirty and "dirty" in um.dirty_reason
