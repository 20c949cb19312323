"""NTFS used-cluster maps against ntfsinfo and partclone.ntfs, and a restore of only the
used ranges that must pass ntfsfix and (as root, mounted with ntfs-3g) give every file back."""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import pytest

from twofold.fsinfo.blockio import FileReader
from twofold.fsinfo.fsbitmap import detect

from .conftest import (
    IS_ROOT,
    NOT_ROOT_REASON,
    blkid,
    clip,
    copy_used_and_check,
    mounted,
    partclone_domain,
    run,
    tree_digest,
    used_map,
)

SIZE = 64 << 20
DELETED = ("d0/file09.bin", "d2/deep/file08.bin")


def make_ntfs(image: Path, label: str = "TFLABEL") -> None:
    with open(image, "wb") as f:
        f.truncate(SIZE)
    run("mkfs.ntfs", "-q", "-F", "-f", "-L", label, image)


def fill_ntfs(image: Path, tree: Path, mnt: Path) -> dict[str, str]:
    """Copy `tree` in through ntfs-3g (root), delete a few files; return the expected tree."""
    with mounted(["ntfs-3g", str(image)], mnt):
        for item in tree.iterdir():
            if item.is_dir():
                shutil.copytree(item, mnt / item.name)
            else:
                shutil.copy(item, mnt / item.name)
        for rel in DELETED:
            (mnt / rel).unlink()
    want = tree_digest(tree)
    for rel in DELETED:
        want.pop(rel)
    return want


def _ntfsinfo(image: Path) -> dict[str, str]:
    out = run("ntfsinfo", "-m", image).stdout
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\t([^:\n]+):(.*)$", out, re.M)}


def check_ntfs(image: Path, tmp_path: Path) -> Path:
    """Check the UsedMap of `image` against ntfsinfo and partclone; return a copy holding
    only the used ranges, already checked with ntfsfix."""
    with FileReader(image) as reader:
        assert detect(reader) == "ntfs"
    um = used_map(image)
    assert um.fstype == "ntfs" and not um.dirty
    info = _ntfsinfo(image)
    cluster = int(info["Cluster Size"])
    clusters = int(info["Volume Size in Clusters"])
    assert um.block_size == cluster
    domain, partclone_used = partclone_domain("ntfs", image, tmp_path / "domain.log")
    # the clusters are exactly partclone's; beyond them only the backup boot sector
    assert clip(um.extents, 0, clusters * cluster) == domain
    assert um.used_bytes == partclone_used * cluster + 512
    assert um.extents[-1] == (um.total_size - 512, 512)
    blk = blkid(image)
    assert um.label == blk["LABEL"] and um.uuid == blk["UUID"]
    return copy_used_and_check(image, um.extents, tmp_path, ["ntfsfix", "-n"],
                               "processed successfully")


def test_ntfs_empty_used_clusters(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_ntfs(image)
    check_ntfs(image, tmp_path)
    # the filled case needs ntfs-3g mounts (root): see test_ntfs_filled_restorable


@pytest.mark.root
def test_ntfs_filled_restorable(sample_tree: Path, tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip(f"filling NTFS {NOT_ROOT_REASON}")
    image = tmp_path / "fs.img"
    make_ntfs(image)
    want = fill_ntfs(image, sample_tree, tmp_path / "mnt")
    copy = check_ntfs(image, tmp_path)
    assert run("ntfscat", copy, "readme.txt").stdout == (sample_tree / "readme.txt").read_text()
    with mounted(["ntfs-3g", "-o", "ro", str(copy)], tmp_path / "back") as back:
        got = tree_digest(back)
    assert got == want


def _volume_flags_offsets(image: Path) -> list[int]:
    """Byte offsets of the $VOLUME_INFORMATION flags in MFT record 3 and in its $MFTMirr
    copy (mkntfs lays the first MFT records out contiguously)."""
    data = image.read_bytes()
    bps, spc = struct.unpack_from("<HB", data, 11)
    mft_lcn, mirr_lcn = struct.unpack_from("<QQ", data, 48)
    record = mft_lcn * bps * spc + 3 * 1024
    assert data[record : record + 4] == b"FILE"
    pos = record + struct.unpack_from("<H", data, record + 20)[0]
    while True:
        atype, length = struct.unpack_from("<II", data, pos)
        assert atype != 0xFFFFFFFF, "no $VOLUME_INFORMATION in $Volume"
        if atype == 0x70:
            offset = pos + struct.unpack_from("<H", data, pos + 20)[0] + 10
            return [offset, offset - mft_lcn * bps * spc + mirr_lcn * bps * spc]
        pos += length


def test_ntfs_dirty_flag_detected(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    make_ntfs(image)
    with open(image, "r+b") as f:
        for offset in _volume_flags_offsets(image):
            f.seek(offset)
            f.write(b"\x01\x00")  # VOLUME_IS_DIRTY, as Windows leaves it after a crash
    refused = run("ntfsinfo", "-m", image, check=False)  # ntfs-3g's own dirty check
    assert refused.returncode != 0 and "scheduled for check" in refused.stderr
    um = used_map(image)
    assert um.dirty and "dirty" in um.dirty_reason
