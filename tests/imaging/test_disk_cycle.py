"""A whole GPT disk (EFI FAT32, ext4 root, NTFS data) imaged, verified and restored to a
larger file: the table must fit the new size, every file system must fsck clean and
every file read back identical; a second image after a small change stores little."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.image.conftest import (
    IS_ROOT,
    assert_gpt_clean,
    mounted,
    partclone_domain,
    run,
    tree_digest,
)
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.manifest import parse_manifest
from twofold.image.restore import restore
from twofold.image.verify import verify

from .conftest import (
    FS_OF_PART,
    FixedClock,
    MiB,
    extract,
    mount_args,
    partition_bounds,
    root_only,
    sparse_copy,
)

pytestmark = root_only

FSCK = {"fat32": ["fsck.vfat", "-n"], "ext4": ["e2fsck", "-fn"], "ntfs": ["ntfsfix", "-n"]}


def _check_restored(disk: Path, tree: Path, work: Path) -> None:
    assert_gpt_clean(disk)
    for number, (start, size) in partition_bounds(disk).items():
        fs = FS_OF_PART[number]
        vol = extract(disk, start, size, work / f"p{number}.img")
        run(*FSCK[fs], vol)
        if fs == "fat32":  # no vfat in every kernel: mtools reads it
            run("mcopy", "-s", "-n", "-i", vol, "::/", work / "fat")
            got = tree_digest(work / "fat")
        else:
            with mounted(mount_args(fs, vol), work / f"m{number}") as mnt:
                got = tree_digest(mnt / "tree" if fs == "ntfs" else mnt)
        want = tree_digest(tree)
        assert {k: v for k, v in got.items() if k in want} == want, f"partition {number}"
        vol.unlink()


def test_image_restore_larger_and_incremental(gpt_disk: Path, seeded_tree: Path,
                                              tmp_path: Path) -> None:
    target = tmp_path / "drive"
    target.mkdir()
    clock = FixedClock()
    first = create(str(gpt_disk), str(target), "first", 3, None, False, NullProgress(), clock)
    assert first.kind == "disk" and first.new_chunks > 0 and first.zero_chunks > 0
    manifest = parse_manifest(
        (target / "twofold-images/images/first.json").read_bytes(), "first")
    assert [a.fs for a in manifest.areas] == [None, "fat32", "ext4", "ntfs"]
    assert manifest.table is not None and manifest.table["kind"] == "gpt"
    # partclone agrees on the ext4 used blocks (the extents may also hold bytes past the
    # file system's last block, which partclone leaves out)
    start, size = partition_bounds(gpt_disk)[2]
    root_vol = extract(gpt_disk, start, size, tmp_path / "root.img")
    _ranges, blocks = partclone_domain("ext4", root_vol, tmp_path / "pc.log")
    header = run("dumpe2fs", "-h", root_vol).stdout
    block = int(next(x for x in header.splitlines() if x.startswith("Block size:")).split()[-1])
    assert blocks * block <= manifest.areas[2].used_bytes < blocks * block + 2 * MiB
    root_vol.unlink()

    assert not verify(str(target), "first", NullProgress(), clock).damages
    bigger = tmp_path / "bigger.img"  # missing: created sparse at the source size...
    restore(str(target), "first", str(bigger), None, NullProgress(), clock)
    assert bigger.stat().st_size == gpt_disk.stat().st_size
    assert bigger.stat().st_blocks * 512 < gpt_disk.stat().st_size
    with open(bigger, "r+b") as f:  # ...then grown, and restored onto as a larger disk
        f.truncate(gpt_disk.stat().st_size + 32 * MiB)
    result = restore(str(target), "first", str(bigger), None, NullProgress(), clock)
    assert result.gpt_moved and result.bytes_checked == result.bytes_written
    _check_restored(bigger, seeded_tree, tmp_path)
    table = json.loads(run("sfdisk", "--json", bigger).stdout)["partitiontable"]
    assert table["lastlba"] == (bigger.stat().st_size // 512) - 34

    # a small change: one 1 MB file on ext4 -> the second image stores little
    changed = sparse_copy(gpt_disk, tmp_path / "changed.img")
    start, size = partition_bounds(changed)[2]
    vol = extract(changed, start, size, tmp_path / "root2.img")
    with mounted(mount_args("ext4", vol, rw=True), tmp_path / "mroot") as mnt:
        (mnt / "new-file.bin").write_bytes(bytes(range(256)) * 4096)
    with open(changed, "r+b") as f:
        f.seek(start)
        f.write(vol.read_bytes())
    second = create(str(changed), str(target), "second", 3, None, False, NullProgress(),
                    clock)
    assert second.new_chunks >= 1
    assert second.stored_new_bytes < first.stored_new_bytes * 0.2, (first, second)
    assert not verify(str(target), None, NullProgress(), clock).damages
    out = tmp_path / "second.img"
    restore(str(target), "second", str(out), 2, NullProgress(), clock)
    assert out.read_bytes() == vol.read_bytes()


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_single_partition_source(gpt_disk: Path, tmp_path: Path) -> None:
    start, size = partition_bounds(gpt_disk)[3]
    vol = extract(gpt_disk, start, size, tmp_path / "ntfs.img")
    target = tmp_path / "drive"
    target.mkdir()
    clock = FixedClock()
    r = create(str(vol), str(target), None, 1, None, False, NullProgress(), clock)
    assert r.kind == "partition" and r.used_bytes < size
    out = tmp_path / "back.img"
    restore(str(target), r.name, str(out), None, NullProgress(), clock)
    run("ntfsfix", "-n", out)
    with mounted(mount_args("ntfs", out), tmp_path / "a") as a, \
            mounted(mount_args("ntfs", vol), tmp_path / "b") as b:
        assert tree_digest(a) == tree_digest(b)
