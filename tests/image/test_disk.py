"""A whole GPT disk (EFI FAT32, ext4 root, NTFS data) copied through the readers alone:
table bytes, gaps and each partition's used ranges onto a larger disk, the GPT grown;
then the table must verify and every file system must fsck clean and read back."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from twofold.fsinfo.blockio import FileReader, SliceReader
from twofold.fsinfo.fsbitmap import detect, used_ranges
from twofold.fsinfo.gptgrow import grow_gpt
from twofold.fsinfo.parttable import parse_table

from .conftest import (
    IS_ROOT,
    assert_gpt_clean,
    copy_extents,
    mounted,
    partclone_domain,
    run,
    sfdisk_json,
    tree_digest,
)

MiB = 1 << 20
SCRIPT = """label: gpt
size=40MiB, type=uefi, name="EFI"
size=48MiB, type=linux, name="root"
size=40MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="data"
"""


def _volume(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _build_disk(tmp: Path, tree: Path) -> tuple[Path, bytes]:
    """The source disk, and the 'boot code' planted in the gap before partition 1."""
    efi = _volume(tmp / "efi.img", 40 * MiB)
    run("mkfs.vfat", "-F", "32", "-s", "1", efi)
    run("mcopy", "-s", "-i", efi, *sorted(tree.iterdir()), "::/")
    root = _volume(tmp / "root.img", 48 * MiB)
    run("mke2fs", "-q", "-F", "-t", "ext4", "-d", tree, root)
    data = _volume(tmp / "data.img", 40 * MiB)
    run("mkfs.ntfs", "-q", "-F", "-f", data)
    if IS_ROOT:  # without root NTFS stays empty: filling needs an ntfs-3g mount
        with mounted(["ntfs-3g", str(data)], tmp / "mnt") as mnt:
            shutil.copytree(tree, mnt / "tree")
    disk = _volume(tmp / "disk.img", 140 * MiB)
    run("sfdisk", "-q", disk, stdin=SCRIPT)
    parts = sfdisk_json(disk)["partitions"]
    boot_code = random.Random(3).randbytes(40_000)
    with open(disk, "r+b") as f:
        for part, vol in zip(parts, (efi, root, data), strict=True):
            f.seek(part["start"] * 512)
            f.write(vol.read_bytes())
        f.seek(34 * 512)
        f.write(boot_code)
    return disk, boot_code


def _extract(disk: Path, start: int, size: int, out: Path) -> Path:
    with open(disk, "rb") as fin, open(out, "wb") as fout:
        fin.seek(start)
        fout.write(fin.read(size))
    return out


def test_whole_gpt_disk_through_used_ranges(sample_tree: Path, tmp_path: Path) -> None:
    disk, boot_code = _build_disk(tmp_path, sample_tree)
    target = tmp_path / "restored.img"
    kinds: list[str | None] = []
    copied = 0
    with FileReader(disk) as reader:
        table = parse_table(reader)
        assert table.kind == "gpt" and len(table.partitions) == 3
        ranges = list(table.table_ranges) + list(table.gaps)
        for part in table.partitions:
            window = SliceReader(reader, part.start, part.size)
            kinds.append(detect(window))
            um = used_ranges(window)
            assert um is not None and not um.dirty
            ranges += [(part.start + off, length) for off, length in um.extents]
            copied += um.used_bytes
    assert kinds == ["fat32", "ext4", "ntfs"]
    assert copied < 40 * MiB  # far less than the 128 MiB of partitions
    copy_extents(disk, target, sorted(ranges))
    with open(target, "r+b") as f:
        f.truncate(200 * MiB)
    with FileReader(target) as reader:
        writes = grow_gpt(reader, 200 * MiB)
    fd = os.open(target, os.O_WRONLY)
    try:
        for offset, data in writes:
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)

    assert_gpt_clean(target)
    before, after = sfdisk_json(disk)["partitions"], sfdisk_json(target)["partitions"]
    strip = [{k: v for k, v in p.items() if k != "node"} for p in before]
    assert [{k: v for k, v in p.items() if k != "node"} for p in after] == strip
    with open(target, "rb") as f:
        f.seek(34 * 512)
        assert f.read(len(boot_code)) == boot_code

    want = tree_digest(sample_tree)
    efi_p, root_p, data_p = after
    efi = _extract(target, efi_p["start"] * 512, efi_p["size"] * 512, tmp_path / "efi2.img")
    assert run("fsck.vfat", "-n", efi, check=False).returncode == 0
    (tmp_path / "efi_out").mkdir()
    run("mcopy", "-s", "-n", "-i", efi, "::/*", tmp_path / "efi_out")
    assert tree_digest(tmp_path / "efi_out") == want

    root = _extract(target, root_p["start"] * 512, root_p["size"] * 512, tmp_path / "root2.img")
    assert run("e2fsck", "-fn", root, check=False).returncode == 0
    (tmp_path / "root_out").mkdir()
    run("debugfs", "-R", f"rdump / {tmp_path / 'root_out'}", root)
    got = {k: v for k, v in tree_digest(tmp_path / "root_out").items() if "lost+found" not in k}
    assert got == want
    source_root = _extract(disk, root_p["start"] * 512, root_p["size"] * 512, tmp_path / "r.img")
    _, partclone_used = partclone_domain("ext4", source_root, tmp_path / "domain.log")
    with FileReader(source_root) as reader:
        um = used_ranges(reader)
    assert um is not None and um.used_bytes // um.block_size == partclone_used

    ntfs = _extract(target, data_p["start"] * 512, data_p["size"] * 512, tmp_path / "data2.img")
    assert run("ntfsfix", "-n", ntfs, check=False).returncode == 0
    if IS_ROOT:
        with mounted(["ntfs-3g", "-o", "ro", str(ntfs)], tmp_path / "back") as back:
            assert tree_digest(back / "tree") == want
