"""`image files`: single files and folders copied out of an image (ext4, FAT32, NTFS,
exFAT and file-level partitions) with their metadata, without the user mounting
anything; a path not in the image, an existing destination or a symlink out of the image
copy nothing."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.drives import IS_ROOT, run, tool
from tests.image.conftest import tree_digest
from tests.imaging.conftest import FixedClock, MiB, blank
from tests.imaging.test_mount import flip_largest_chunk, image_mounted
from twofold.cli.app import app
from twofold.core.errors import UsageError
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.mountfiles import FilesRefused, PathNotInImage, copy_files

NEEDS = "needs root, /dev/fuse and loop devices (FUSE and loop mounts)"
pytestmark = [pytest.mark.root, pytest.mark.skipif(
    not IS_ROOT or not os.path.exists("/dev/fuse") or not os.path.exists("/dev/loop-control"),
    reason=NEEDS)]


@pytest.fixture(scope="module")
def disk_store(tmp_path_factory: pytest.TempPathFactory, gpt_disk: Path) -> Path:
    store = tmp_path_factory.mktemp("filesstore")
    create(str(gpt_disk), str(store), "disk", 3, None, False, NullProgress(), FixedClock())
    return store


def _no_mounts_left() -> None:
    with open("/proc/self/mountinfo") as f:
        assert "twofold-files-" not in f.read()


def test_files_and_folders_come_out_of_ext4_fat_and_ntfs(
        disk_store: Path, seeded_tree: Path, tmp_path: Path) -> None:
    to = tmp_path / "out"
    r = copy_files(str(disk_store), "disk", ["part2/d1", "/part3/tree/readme.txt",
                                             "part1/D0"], str(to))
    assert [d for _p, d in r.copied] == [str(to / "d1"), str(to / "readme.txt"),
                                         str(to / "D0")]
    assert tree_digest(to / "d1") == tree_digest(seeded_tree / "d1")
    assert (to / "readme.txt").read_bytes() == (seeded_tree / "readme.txt").read_bytes()
    fat = {k.lower(): v for k, v in tree_digest(to / "D0").items()}
    assert fat == tree_digest(seeded_tree / "d0")
    # metadata kept: the ext4 file's mode and mtime as the image holds them
    with image_mounted(disk_store, "disk", tmp_path / "m", tmp_path / "mlog"):
        root = tmp_path / "m" / "part2"
        for name in ("d1", "d1/file01.bin"):
            want, got = os.lstat(root / name), os.lstat(to / name)
            assert (got.st_mode, got.st_mtime_ns, got.st_uid) == \
                (want.st_mode, want.st_mtime_ns, want.st_uid), name
    assert r.entries == len(tree_digest(to / "d1")) + 1 + 1 + len(tree_digest(to / "D0")) + 1
    _no_mounts_left()


def test_a_path_not_in_the_image_copies_nothing_and_exits_1(disk_store: Path,
                                                            tmp_path: Path) -> None:
    to = tmp_path / "out"
    with pytest.raises(PathNotInImage, match=r"part2/no/such\.txt"):
        copy_files(str(disk_store), "disk", ["part2/d1", "part2/no/such.txt"], str(to))
    assert os.listdir(to) == []
    got = CliRunner().invoke(app, ["image", "files", str(disk_store), "disk",
                                   "part2/nothing-here", "--to", str(to)])
    assert got.exit_code == 1 and "not in image disk: part2/nothing-here" in got.output
    assert os.listdir(to) == []
    # no partition named, on a disk of three: a usage error (exit 2)
    with pytest.raises(UsageError, match="names no partition"):
        copy_files(str(disk_store), "disk", ["d1"], str(to))
    with pytest.raises(UsageError, match="bad path"):
        copy_files(str(disk_store), "disk", ["part2/../../etc"], str(to))
    _no_mounts_left()


def test_an_existing_destination_is_not_overwritten(disk_store: Path, tmp_path: Path) -> None:
    to = tmp_path / "out"
    to.mkdir()
    (to / "readme.txt").write_text("mine")
    with pytest.raises(FilesRefused, match="exists"):
        copy_files(str(disk_store), "disk", ["part2/readme.txt"], str(to))
    assert (to / "readme.txt").read_text() == "mine"


def test_a_symlink_in_the_image_is_never_followed_out_of_it(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "real").mkdir(parents=True)
    (tree / "real" / "a.txt").write_text("in the image\n")
    os.symlink("/etc", tree / "escape")
    vol = blank(tmp_path / "ext4.img", 16 * MiB)
    run("mkfs.ext4", "-q", "-F", "-d", tree, vol)
    store = tmp_path / "store"
    store.mkdir()
    create(str(vol), str(store), "v", 3, None, False, NullProgress(), FixedClock())
    to = tmp_path / "out"
    with pytest.raises(PathNotInImage):
        copy_files(str(store), "v", ["escape/hostname"], str(to))
    r = copy_files(str(store), "v", ["escape", "real/a.txt"], str(to))  # one partition: no prefix
    assert os.readlink(to / "escape") == "/etc"
    assert (to / "a.txt").read_text() == "in the image\n" and r.entries == 2


def test_exfat_and_file_level_partitions(tmp_path: Path) -> None:
    tool("mkfs.exfat")
    vol = blank(tmp_path / "exfat.img", 48 * MiB)
    run("mkfs.exfat", vol)
    data = random.Random(3).randbytes(700_000)
    dev = run("losetup", "-f", "--show", vol).stdout.strip()
    fill = tmp_path / "fill"
    fill.mkdir()
    try:
        run("mount.exfat-fuse", dev, fill)
        (fill / "Photos").mkdir()
        (fill / "Photos" / "cat.jpg").write_bytes(data)
        run("umount", fill)
    finally:
        run("losetup", "-d", dev, check=False)
    store = tmp_path / "store"
    store.mkdir()
    create(str(vol), str(store), "x", 3, None, False, NullProgress(), FixedClock())
    copy_files(str(store), "x", ["volume/Photos"], str(tmp_path / "out"))
    assert (tmp_path / "out" / "Photos" / "cat.jpg").read_bytes() == data

    from tests.imaging.live_disk import live_disk, snapshot

    (tmp_path / "live").mkdir()
    with live_disk(tmp_path / "live") as disk:
        create(disk.dev, str(store), "live", 3, None, False, NullProgress(), FixedClock())
        want = snapshot(disk.root / "dir3", True)
        big = (disk.root / "big.bin").read_bytes()
    to = tmp_path / "out2"
    copy_files(str(store), "live", ["part1/dir3", "part1/big.bin"], str(to))
    assert snapshot(to / "dir3", True) == want  # modes, owners, times, xattrs, capabilities
    assert (to / "big.bin").read_bytes() == big


def test_a_damaged_chunk_stops_the_copy_naming_it_and_leaves_no_half_copy(
        tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "docs").mkdir(parents=True)
    (tree / "docs" / "a.txt").write_text("fine\n")
    (tree / "docs" / "big.bin").write_bytes(random.Random(5).randbytes(6 * MiB))
    vol = blank(tmp_path / "ext4.img", 32 * MiB)
    run("mkfs.ext4", "-q", "-F", "-d", tree, vol)
    store = tmp_path / "store"
    store.mkdir()
    create(str(vol), str(store), "v", 3, None, False, NullProgress(), FixedClock())
    cid = flip_largest_chunk(store, "v")
    to = tmp_path / "out"
    with pytest.raises(FilesRefused, match=cid.hex()):
        copy_files(str(store), "v", ["docs"], str(to))
    assert os.listdir(to) == []
    _no_mounts_left()
