"""`image mount`: a GPT disk (FAT32, ext4, NTFS), an exFAT volume and a live (file-level)
disk imaged, mounted read-only through FUSE and compared with their sources; a flipped
bit reads as EIO naming the chunk; bad mount points, no /dev/fuse, a partition no driver
mounts; Ctrl-C and umount take everything down in order."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.drives import IS_ROOT, run, tool
from tests.image.conftest import tree_digest
from tests.imaging.conftest import FixedClock, MiB, blank, store_files
from twofold.core.errors import UsageError
from twofold.core.progress import NullProgress
from twofold.image import mount as mount_mod
from twofold.image.create import create
from twofold.image.mount import MountRefused, MountResult, is_mounted, mount_image, unmount_all
from twofold.image.repo import load_manifest, open_store

NEEDS = "needs root, /dev/fuse and loop devices (FUSE and loop mounts)"
pytestmark = [pytest.mark.root, pytest.mark.skipif(
    not IS_ROOT or not os.path.exists("/dev/fuse") or not os.path.exists("/dev/loop-control"),
    reason=NEEDS)]


def _loops_under(point: Path) -> list[str]:
    listed = json.loads(run("losetup", "-l", "-J", "-O", "NAME,BACK-FILE").stdout or "{}")
    return [d["name"] for d in listed.get("loopdevices", [])
            if str(d.get("back-file") or "").startswith(f"{point}/")]


def _mounts_under(point: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f
                if line.split()[4] == str(point) or line.split()[4].startswith(f"{point}/")]


@contextmanager
def image_mounted(store: Path, image: str, point: Path, log: Path) -> Iterator[MountResult]:
    """The image mounted on `point`; afterwards nothing of it is left mounted or attached."""
    point.mkdir(exist_ok=True)
    r = mount_image(str(store), image, str(point), log=str(log))
    try:
        yield r
    finally:
        if is_mounted(str(point)):
            unmount_all(str(point))
    assert _mounts_under(point) == [] and _loops_under(point) == []
    for _ in range(100):  # the image's process ends once it is unmounted
        if not os.path.exists(f"/proc/{r.pid}") or \
                Path(f"/proc/{r.pid}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the image's file system process is still running")


@pytest.fixture(scope="module")
def disk_store(tmp_path_factory: pytest.TempPathFactory, gpt_disk: Path) -> Path:
    store = tmp_path_factory.mktemp("mountstore")
    create(str(gpt_disk), str(store), "disk", 3, None, False, NullProgress(), FixedClock())
    return store


def test_a_disk_image_is_mounted_read_only_and_reads_as_its_source(
        disk_store: Path, gpt_disk: Path, seeded_tree: Path, tmp_path: Path) -> None:
    point = tmp_path / "mnt"
    with image_mounted(disk_store, "disk", point, tmp_path / "log") as r:
        names = sorted(os.listdir(point))
        assert names == ["disk.img", "part1", "part1-fat32.img", "part2", "part2-ext4.img",
                         "part3", "part3-ntfs.img"]
        assert [(p.folder, p.mounted) for p in r.parts] == \
            [("part1", True), ("part2", True), ("part3", True)]
        want = tree_digest(seeded_tree)
        assert {k: v for k, v in tree_digest(point / "part2").items()
                if not k.startswith("lost+found")} == want
        assert tree_digest(point / "part3" / "tree") == want
        fat = {k.lower(): v for k, v in tree_digest(point / "part1").items()}
        assert fat == {k.lower(): v for k, v in want.items()}
        # every stored byte of the disk file is the source's
        m = load_manifest(open_store(str(disk_store)).objects, "disk")
        with open(gpt_disk, "rb") as src, open(point / "disk.img", "rb") as got:
            assert os.fstat(got.fileno()).st_size == gpt_disk.stat().st_size
            for area in m.areas:
                for offset, length in area.extents:
                    src.seek(area.start + offset)
                    got.seek(area.start + offset)
                    assert got.read(length) == src.read(length), (area.label, offset)
        start = m.areas[2].start
        with open(gpt_disk, "rb") as src, open(point / "part2-ext4.img", "rb") as got:
            src.seek(start)
            assert got.read(MiB) == src.read(MiB)
        # read only, all the way down
        with pytest.raises(OSError) as e:
            open(point / "disk.img", "r+b")  # noqa: SIM115
        assert e.value.errno in (errno.EROFS, errno.EACCES)
        with pytest.raises(OSError):
            (point / "part2" / "new.txt").write_text("no")
        # bad input: a mount point already in use, or not empty
        with pytest.raises(MountRefused, match="already a mount point"):
            mount_image(str(disk_store), "disk", str(point), log=str(tmp_path / "log"))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(MountRefused, match="not empty"):
        mount_image(str(disk_store), "disk", str(full))
    with pytest.raises(UsageError, match="not a folder"):
        mount_image(str(disk_store), "disk", str(full / "keep.txt"))
    assert (full / "keep.txt").read_text() == "mine"


def test_no_dev_fuse_is_refused_naming_the_package(disk_store: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mount_mod, "FUSE_DEVICE", str(tmp_path / "no-fuse"))
    (tmp_path / "mnt").mkdir()
    with pytest.raises(MountRefused, match="is missing") as e:
        mount_image(str(disk_store), "disk", str(tmp_path / "mnt"))
    assert "fuse3" in e.value.hint
    assert not os.path.ismount(tmp_path / "mnt")


def test_exfat_volume_is_mounted_through_its_fuse_driver(tmp_path: Path) -> None:
    tool("mkfs.exfat")
    tool("mount.exfat-fuse")
    vol = blank(tmp_path / "exfat.img", 64 * MiB)
    run("mkfs.exfat", "-L", "STICK", vol)
    rng = random.Random(4)
    files = {f"dir{i}/f{i}.bin": rng.randbytes(rng.randrange(1, 600_000)) for i in range(8)}
    with _loop(vol) as dev:
        store = _filled_and_imaged(["mount.exfat-fuse", dev], vol, files, tmp_path, "stick")
    point = tmp_path / "mnt"
    with image_mounted(store, "stick", point, tmp_path / "log") as r:
        assert sorted(os.listdir(point)) == ["volume", "volume-exfat-STICK.img"]
        assert r.disk_file is None and r.parts[0].mounted, r.parts[0].note
        for name, data in files.items():
            assert (point / "volume" / name).read_bytes() == data


def _filled_and_imaged(mount: list[str], vol: Path, files: dict[str, bytes],
                       tmp_path: Path, name: str) -> Path:
    """`files` written into the file system that `mount` (before the mount point)
    mounts, then `vol` imaged as `name` into a new store; the store."""
    fill = tmp_path / "fill"
    fill.mkdir()
    run(*mount, fill)
    try:
        for rel, data in files.items():
            (fill / rel).parent.mkdir(exist_ok=True)
            (fill / rel).write_bytes(data)
    finally:
        run("umount", fill)
    store = tmp_path / "store"
    store.mkdir()
    create(str(vol), str(store), name, 3, None, False, NullProgress(), FixedClock())
    return store


@contextmanager
def _loop(path: Path) -> Iterator[str]:
    dev = run("losetup", "-f", "--show", path).stdout.strip()
    try:
        yield dev
    finally:
        run("losetup", "-d", dev, check=False)


def flip_largest_chunk(store: Path, image: str) -> bytes:
    """Flip one bit in the middle of the image's largest stored chunk (random file data
    in these tests); its id."""
    chunks = open_store(str(store))
    m = load_manifest(chunks.objects, image)
    cid, loc = max(((c, chunks.location(c)) for c in m.chunk_ids()),
                   key=lambda t: t[1].length if t[1] else 0)
    assert loc is not None
    pack = next(p for p in store_files(store, ".pack") if p.name in loc.pack)
    with open(pack, "r+b") as f:
        f.seek(loc.offset + loc.length // 2)
        byte = f.read(1)
        f.seek(loc.offset + loc.length // 2)
        f.write(bytes([byte[0] ^ 0x10]))
    return cid


def test_a_flipped_bit_reads_as_eio_naming_the_chunk(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    rng = random.Random(9)
    (tree / "big.bin").write_bytes(rng.randbytes(6 * MiB))
    (tree / "small.txt").write_text("still readable\n")
    vol = blank(tmp_path / "ext4.img", 32 * MiB)
    run("mkfs.ext4", "-q", "-F", "-d", tree, vol)
    store = tmp_path / "store"
    store.mkdir()
    create(str(vol), str(store), "v", 3, None, False, NullProgress(), FixedClock())
    cid = flip_largest_chunk(store, "v")
    point, log = tmp_path / "mnt", tmp_path / "log"
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    with image_mounted(store, "v", point, log):
        assert (point / "volume" / "small.txt").read_text() == "still readable\n"
        with pytest.raises(OSError) as e:
            (point / "volume" / "big.bin").read_bytes()
        assert e.value.errno == errno.EIO
        with pytest.raises(OSError) as e:
            (point / "volume-ext4.img").read_bytes()
        assert e.value.errno == errno.EIO
    said = log.read_text()
    assert cid.hex() in said and "I/O error" in said
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before  # nothing written


def test_a_partition_no_driver_mounts_stays_a_file_and_is_named(tmp_path: Path) -> None:
    disk = blank(tmp_path / "disk.img", 24 * MiB)
    run("sfdisk", "-q", disk, stdin="label: dos\nsize=10MiB, type=83\nsize=10MiB, type=83\n")
    rng = random.Random(2)
    noise = rng.randbytes(10 * MiB)
    ext = blank(tmp_path / "p1.img", 10 * MiB)
    run("mkfs.ext4", "-q", "-F", ext)
    with open(disk, "r+b") as f:
        f.seek(MiB)
        f.write(ext.read_bytes())
        f.write(noise)
    store = tmp_path / "store"
    store.mkdir()
    create(str(disk), str(store), "odd", 3, None, False, NullProgress(), FixedClock())
    point = tmp_path / "mnt"
    with image_mounted(store, "odd", point, tmp_path / "log") as r:
        assert [p.mounted for p in r.parts] == [True, False]
        assert "not mounted" in r.parts[1].note and r.parts[1].file is not None
        assert (point / r.parts[1].file).read_bytes() == noise
        assert os.listdir(point / "part2") == []


def test_a_live_disk_image_shows_its_files_directly(tmp_path: Path) -> None:
    from tests.imaging.live_disk import live_disk, snapshot

    with live_disk(tmp_path) as disk:
        store = tmp_path / "store"
        store.mkdir()
        create(disk.dev, str(store), "live", 3, None, False, NullProgress(), FixedClock())
        want1 = snapshot(disk.root, True)
        want2 = snapshot(disk.esp, False, skip=("LIVEESP",))
    point = tmp_path / "mnt"
    with image_mounted(store, "live", point, tmp_path / "log") as r:
        assert r.disk_file is None and "disk.img" not in os.listdir(point)
        assert [(p.folder, p.file, p.mounted) for p in r.parts] == \
            [("part1", None, True), ("part2", None, True)]
        assert snapshot(point / "part1", True) == want1
        assert snapshot(point / "part2", False) == want2


def test_ctrl_c_unmounts_everything_in_order(disk_store: Path, tmp_path: Path) -> None:
    point = tmp_path / "mnt"
    point.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "twofold", "image", "mount",
                             str(disk_store), "disk", str(point)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        said = ""
        while "Press Ctrl-C" not in said and proc.poll() is None:
            said += proc.stderr.readline()
        assert len(_mounts_under(point)) == 4, said
        assert len(_loops_under(point)) == 3
        proc.send_signal(signal.SIGINT)
        outs, errs = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if is_mounted(str(point)):
            unmount_all(str(point))
    assert proc.returncode == 0, errs
    assert "part2/: ext4 mounted read-only" in outs
    assert "unmounted" in errs
    assert _mounts_under(point) == [] and _loops_under(point) == []


def test_background_mount_and_umount_through_the_cli(disk_store: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from twofold.cli.app import app

    point = tmp_path / "mnt"
    point.mkdir()
    env = {"TWOFOLD_STATE_DIR": str(tmp_path / "state")}
    got = CliRunner().invoke(app, ["image", "mount", str(disk_store), "disk", str(point),
                                   "--background"], env=env)
    try:
        assert got.exit_code == 0, got.output
        assert "twofold image umount" in got.output and len(_mounts_under(point)) == 4
    finally:
        again = CliRunner().invoke(app, ["image", "umount", str(point)], env=env)
    assert again.exit_code == 0 and "4 file systems, 3 loop devices" in again.output
    assert _mounts_under(point) == [] and _loops_under(point) == []
    third = CliRunner().invoke(app, ["image", "umount", str(point)], env=env)
    assert third.exit_code == 1 and "no twofold image is mounted" in third.output


@pytest.mark.parametrize("kind", ["ext2", "ext3", "xfs", "btrfs"])
def test_other_kernel_file_systems_are_mounted_without_replaying_anything(
        kind: str, tmp_path: Path) -> None:
    tool(f"mkfs.{kind}")
    size = {"xfs": 320 * MiB, "btrfs": 128 * MiB}.get(kind, 24 * MiB)
    vol = blank(tmp_path / f"{kind}.img", size)
    run(f"mkfs.{kind}", *(["-q", "-F"] if kind.startswith("ext") else ["-f"]), vol)
    rng = random.Random(6)
    files = {f"d{i % 3}/f{i}.bin": rng.randbytes(rng.randrange(1, 300_000)) for i in range(12)}
    store = _filled_and_imaged(["mount", "-o", "loop", str(vol)], vol, files, tmp_path, "k")
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    point = tmp_path / "mnt"
    with image_mounted(store, "k", point, tmp_path / "log") as r:
        assert r.parts[0].mounted, r.parts[0].note
        for name, data in files.items():
            assert (point / "volume" / name).read_bytes() == data
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before  # only read
