"""Helpers for the image engine tests: a GPT disk with FAT32, ext4 and NTFS partitions,
a fixed clock, in-process engine calls, and targets of every kind (folder, SFTP, S3)."""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.image.conftest import IS_ROOT, make_tree, mounted, run, sfdisk_json
from twofold.blobs.objects import ObjectStore
from twofold.blobs.remote import open_target
from twofold.blobs.retry import RETRY_ENV

from .servers import Ceph, Sshd, ceph, sshd

__all__ = ["ceph", "sshd"]  # session fixtures of the remote store tests

MiB = 1 << 20
NOT_ROOT = "needs root (ntfs-3g and loop mounts to fill and read the file systems)"
root_only = [pytest.mark.root, pytest.mark.skipif(not IS_ROOT, reason=NOT_ROOT)]
DISK_SCRIPT = """label: gpt
size=40MiB, type=uefi, name="EFI"
size=48MiB, type=linux, name="root"
size=40MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="data"
"""
DISK_SIZE = 140 * MiB
FS_OF_PART = {1: "fat32", 2: "ext4", 3: "ntfs"}


class FixedClock:
    """A clock that ticks one second per reading, from a fixed start."""

    def __init__(self, start_ns: int = 1_767_225_600_000_000_000) -> None:
        self.ns = start_ns

    def now_ns(self) -> int:
        self.ns += 1_000_000_000
        return self.ns


def blank(path: Path, size: int) -> Path:
    """A sparse file of `size` bytes."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def build_disk(folder: Path, tree: Path) -> Path:
    """A GPT disk image: EFI FAT32 (mcopy), ext4 root (mkfs.ext4 -d), NTFS data (filled
    through an ntfs-3g mount), and seeded 'boot code' in the gap before partition 1."""
    efi = blank(folder / "efi.img", 40 * MiB)
    run("mkfs.vfat", "-F", "32", "-s", "1", efi)
    run("mcopy", "-s", "-i", efi, *sorted(tree.iterdir()), "::/")
    root = blank(folder / "root.img", 48 * MiB)
    run("mkfs.ext4", "-q", "-F", "-d", tree, root)
    data = blank(folder / "data.img", 40 * MiB)
    run("mkfs.ntfs", "-q", "-F", "-f", data)
    with mounted(["ntfs-3g", str(data)], folder / "mnt") as mnt:
        shutil.copytree(tree, mnt / "tree")
    disk = blank(folder / "disk.img", DISK_SIZE)
    run("sfdisk", "-q", disk, stdin=DISK_SCRIPT)
    parts = sfdisk_json(disk)["partitions"]
    with open(disk, "r+b") as f:
        for part, vol in zip(parts, (efi, root, data), strict=True):
            f.seek(part["start"] * 512)
            f.write(vol.read_bytes())
            vol.unlink()
        f.seek(34 * 512)
        f.write(random.Random(3).randbytes(40_000))
    return disk


def partition_bounds(disk: Path) -> dict[int, tuple[int, int]]:
    """Partition number -> (start, size) in bytes, as sfdisk reads them."""
    parts = sfdisk_json(disk)["partitions"]
    return {i + 1: (p["start"] * 512, p["size"] * 512) for i, p in enumerate(parts)}


def extract(disk: Path, start: int, size: int, out: Path) -> Path:
    """Copy [start, start + size) of `disk` to the file `out`."""
    with open(disk, "rb") as fin, open(out, "wb") as fout:
        fin.seek(start)
        left = size
        while left:
            block = fin.read(min(left, 8 * MiB))
            fout.write(block)
            left -= len(block)
    return out


def mount_args(fs: str, image: Path, rw: bool = False) -> list[str]:
    """The mount command (before the mount point) for a file system image."""
    if fs == "ntfs":
        return ["ntfs-3g", "-o", "rw" if rw else "ro", str(image)]
    return ["mount", "-o", ("rw" if rw else "ro") + ",loop", str(image)]


@pytest.fixture(scope="session")
def seeded_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded tree (about 5 MB) every file system of the test disk holds."""
    return make_tree(tmp_path_factory.mktemp("imgtree") / "tree", seed=11)


@pytest.fixture(scope="session")
def gpt_disk(tmp_path_factory: pytest.TempPathFactory, seeded_tree: Path) -> Path:
    """The test disk, built once per session (root only); copy it before changing it."""
    if not IS_ROOT:
        pytest.skip(NOT_ROOT)
    return build_disk(tmp_path_factory.mktemp("disk"), seeded_tree)


def store_files(target: Path, suffix: str) -> list[Path]:
    """The store's files ending in `suffix`."""
    return sorted(p for p in (target / "twofold-images").rglob(f"*{suffix}")
                  if ".tmp" not in p.parts)


def sparse_copy(src: Path, dst: Path) -> Path:
    """A copy of a disk image (sparse where the source is)."""
    run("cp", "--sparse=always", src, dst)
    return dst



@dataclass
class Place:
    """A target of one kind for a test: its TARGET text, the environment that reaches it,
    and its image store's objects."""

    kind: str
    url: str
    env: dict[str, str]

    def objects(self) -> ObjectStore:
        """The store's objects, opened as twofold opens them."""
        return open_target(self.url)


KINDS = ["local", "sftp", "s3"]


def make_place(kind: str, request: pytest.FixtureRequest, folder: Path,
               monkeypatch: pytest.MonkeyPatch) -> Place:
    """A new, empty target of `kind`, its environment set for in-process calls too."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {RETRY_ENV: "5"}
    if kind == "local":
        place = Place(kind, str(folder), env)
    elif kind == "sftp":
        server: Sshd = request.getfixturevalue("sshd")
        place = Place(kind, server.url(folder), {**env, **server.env()})
    else:
        cluster: Ceph = request.getfixturevalue("ceph")
        place = Place(kind, f"s3://{cluster.bucket()}/{folder.name}", {**env, **cluster.env})
    for key, value in place.env.items():
        monkeypatch.setenv(key, value)
    return place


@pytest.fixture(params=KINDS)
def place(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Place:
    """One empty target of each kind in turn: the shared suite runs on all three."""
    return make_place(request.param, request, tmp_path / "target", monkeypatch)
