"""Single-volume sources of every file system we read: detected, imaged from their used
blocks only, restored to a file that passes the file system's own check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.image.conftest import run, used_map
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.manifest import parse_manifest
from twofold.image.restore import restore

from .conftest import FixedClock, MiB, blank

MKFS = {
    "ext4": (["mkfs.ext4", "-q", "-F"], ["e2fsck", "-fn"]),
    "fat32": (["mkfs.vfat", "-F", "32", "-s", "1"], ["fsck.vfat", "-n"]),
    "ntfs": (["mkfs.ntfs", "-q", "-F", "-f"], ["ntfsfix", "-n"]),
    "exfat": (["mkfs.exfat"], ["fsck.exfat", "-n"]),
}


@pytest.mark.parametrize("fs", sorted(MKFS))
def test_volume_of_each_file_system(fs: str, tmp_path: Path) -> None:
    mkfs, fsck = MKFS[fs]
    vol = blank(tmp_path / f"{fs}.img", 40 * MiB)
    run(*mkfs, vol)
    target = tmp_path / "drive"
    target.mkdir()
    r = create(str(vol), str(target), fs, 3, None, False, NullProgress(), FixedClock())
    manifest = parse_manifest((target / f"twofold-images/images/{fs}.json").read_bytes(), fs)
    assert [a.fs for a in manifest.areas] == [fs] and manifest.kind == "partition"
    assert r.used_bytes < 40 * MiB // 2  # used blocks only
    out = tmp_path / "out.img"
    restore(str(target), fs, str(out), None, NullProgress(), FixedClock())
    run(*fsck, out)
    extents = manifest.areas[0].extents
    with open(vol, "rb") as a, open(out, "rb") as b:
        for offset, length in extents:
            a.seek(offset)
            b.seek(offset)
            assert a.read(length) == b.read(length)


def test_freed_blocks_do_not_make_chunks_new(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(48):  # 200 KB files: several to a 1 MiB cell
        (tree / f"f{i:02d}").write_bytes(os.urandom(200_000))
    vol = blank(tmp_path / "ext.img", 48 * MiB)
    run("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", tree, vol)
    target = tmp_path / "drive"
    target.mkdir()
    clock = FixedClock()
    first = create(str(vol), str(target), "one", 3, None, False, NullProgress(), clock)
    for i in range(0, 48, 2):
        run("debugfs", "-w", "-R", f"rm /f{i:02d}", vol)
    second = create(str(vol), str(target), "two", 3, None, False, NullProgress(), clock)
    assert second.used_bytes < first.used_bytes - 4 * MiB  # the files' blocks are free
    assert second.new_chunks <= 2, second  # only metadata cells (bitmaps, inodes, dirs)
    assert second.stored_new_bytes < first.stored_new_bytes // 20
    out = tmp_path / "out.img"
    restore(str(target), "two", str(out), None, NullProgress(), clock)
    run("e2fsck", "-fn", out)
    with open(vol, "rb") as a, open(out, "rb") as b:
        for offset, length in used_map(vol).extents:
            a.seek(offset)
            b.seek(offset)
            assert a.read(length) == b.read(length)
