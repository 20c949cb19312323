"""ext2/3/4 used-block maps against partclone.ext4 and dumpe2fs, and a restore of only
the used blocks that must pass e2fsck and give every file back."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from twofold.fsinfo.blockio import FileReader, LayoutError
from twofold.fsinfo.fsbitmap import detect, ext

from .conftest import (
    IS_ROOT,
    NOT_ROOT_REASON,
    copy_used_and_check,
    mounted,
    partclone_domain,
    run,
    tree_digest,
    used_map,
)

CASES: dict[str, tuple[str, list[str]]] = {
    "ext2": ("ext2", ["-t", "ext2"]),
    "ext3": ("ext3", ["-t", "ext3"]),
    "ext4": ("ext4", ["-t", "ext4"]),
    "ext4-no-flex_bg": ("ext4", ["-t", "ext4", "-O", "^flex_bg"]),
    "ext4-64bit-4k": ("ext4", ["-t", "ext4", "-b", "4096", "-O", "64bit", "-g", "4096"]),
    "ext4-32bit": ("ext4", ["-t", "ext4", "-O", "^64bit"]),
    "ext4-uninit_bg": ("ext4", ["-t", "ext4", "-O", "^metadata_csum,uninit_bg"]),
    "ext4-meta_bg": ("ext4", ["-t", "ext4", "-O", "meta_bg,^resize_inode"]),
    "ext4-sparse_super2": ("ext4", ["-t", "ext4", "-O", "sparse_super2"]),
    "ext4-bigalloc": ("ext4", ["-t", "ext4", "-b", "4096", "-O", "bigalloc", "-C", "65536"]),
}
DELETED = "d0/file09.bin"  # removed after mkfs so the bitmaps have holes


def _dumpe2fs(image: Path) -> dict[str, str]:
    out = run("dumpe2fs", "-h", image).stdout
    return dict(
        (m.group(1), m.group(2).strip()) for m in re.finditer(r"^([^:\n]+):\s*(.*)$", out, re.M)
    )


def make_ext(image: Path, opts: list[str], tree: Path, size: int = 128 << 20) -> None:
    """An ext file system holding `tree`, minus DELETED (freed through debugfs)."""
    with open(image, "wb") as f:
        f.truncate(size)
    run("mke2fs", "-q", "-F", *opts, "-L", "tf-label", "-d", tree, image)
    run("debugfs", "-w", "-R", f"rm /{DELETED}", image)


@pytest.mark.parametrize("case", list(CASES))
def test_ext_used_blocks_exact_and_restorable(case: str, sample_tree: Path, tmp_path: Path) -> None:
    kind, opts = CASES[case]
    image = tmp_path / "fs.img"
    make_ext(image, opts, sample_tree)
    with FileReader(image) as reader:
        assert detect(reader) == kind
    um = used_map(image)
    assert um.fstype == kind
    assert not um.dirty and um.dirty_reason == ""

    head = _dumpe2fs(image)
    if kind == "ext4" and case not in ("ext4-bigalloc", "ext4-sparse_super2"):
        # the interesting path: uninitialised groups that still hold superblock backups
        groups = run("dumpe2fs", image).stdout.split("\nGroup ")[1:]
        assert any("BLOCK_UNINIT" in g and "superblock" in g for g in groups)
    block_size = int(head["Block size"])
    used_blocks = int(head["Block count"]) - int(head["Free blocks"])
    assert um.label == head["Filesystem volume name"] == "tf-label"
    assert um.uuid == head["Filesystem UUID"]
    assert um.total_size == int(head["Block count"]) * block_size
    assert um.used_bytes == used_blocks * block_size  # dumpe2fs's own free count
    assert 0 < um.used_bytes < um.total_size // 2

    if "bigalloc" not in case:  # partclone.ext4 cannot read bigalloc file systems
        domain, partclone_used = partclone_domain("ext4", image, tmp_path / "domain.log")
        assert um.used_bytes // um.block_size == partclone_used
        assert um.extents == domain

    copy = copy_used_and_check(image, um.extents, tmp_path, ["e2fsck", "-fn"])
    out = tmp_path / "out"
    out.mkdir()
    run("debugfs", "-R", f"rdump / {out}", copy)
    got = tree_digest(out)
    got = {k: v for k, v in got.items() if not k.startswith("lost+found")}
    want = tree_digest(sample_tree)
    want.pop(DELETED)
    assert got == want


def test_ext_dirty_states_detected(sample_tree: Path, tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_ext(image, ["-t", "ext4"], sample_tree, 32 << 20)
    assert not used_map(image).dirty
    run("debugfs", "-w", "-R", "ssv state 0", image)  # "not clean", as after a crash
    assert "not clean" in _dumpe2fs(image)["Filesystem state"]
    um = used_map(image)
    assert um.dirty and "not cleanly unmounted" in um.dirty_reason
    run("debugfs", "-w", "-R", "ssv state 3", image)  # valid + errors
    assert "error" in used_map(image).dirty_reason


@pytest.mark.root
def test_ext_mounted_image_is_dirty(sample_tree: Path, tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip(NOT_ROOT_REASON)
    image = tmp_path / "fs.img"
    make_ext(image, ["-t", "ext4"], sample_tree, 32 << 20)
    live = tmp_path / "live.img"
    with mounted(["mount", "-o", "loop", str(image)], tmp_path / "mnt") as mnt:
        (mnt / "new.txt").write_text("written while mounted\n")
        live.write_bytes(image.read_bytes())  # what an image of a mounted disk sees
    um = used_map(live)
    assert um.dirty and "journal needs recovery" in um.dirty_reason
    assert not used_map(image).dirty  # unmounted cleanly afterwards


def test_ext_2gib_read_fast(sample_tree: Path, tmp_path: Path) -> None:
    image = tmp_path / "big.img"
    with open(image, "wb") as f:
        f.truncate(2 << 30)
    run("mke2fs", "-q", "-F", "-t", "ext4", "-d", sample_tree, image)
    with FileReader(image) as reader:
        ext.used_ranges(reader)  # warm the page cache: the figure is the parsing cost
        start = time.perf_counter()
        um = ext.used_ranges(reader)
        elapsed = time.perf_counter() - start
    head = _dumpe2fs(image)
    assert um.used_bytes == (int(head["Block count"]) - int(head["Free blocks"])) * 4096
    assert elapsed < 0.5, f"reading the bitmaps of a 2 GiB ext4 took {elapsed:.2f} s"


def test_not_ext_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "zero.img"
    image.write_bytes(bytes(1 << 20))
    with FileReader(image) as reader:
        assert detect(reader) is None
        with pytest.raises(LayoutError):
            ext.used_ranges(reader)
