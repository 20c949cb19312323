"""Imaging a disk whose ext4 and FAT partitions are mounted read-write and being written
to: taken at file level, restored (also onto a smaller disk) exactly, fsck clean; the
second image stores only what changed."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.drives import run
from tests.imaging.conftest import FixedClock
from tests.imaging.live_disk import LiveDisk, live_disk, snapshot, writer
from twofold.cli.app import app
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.manage import delete
from twofold.image.manifest import parse_manifest
from twofold.image.restore import restore
from twofold.image.verify import verify

MiB = 1 << 20
pytestmark = pytest.mark.root


@pytest.fixture
def disk(tmp_path: Path) -> LiveDisk:
    with live_disk(tmp_path) as d:
        yield d  # type: ignore[misc]


def _restored_trees(image: Path, work: Path) -> tuple[dict[str, tuple[object, ...]],
                                                       dict[str, tuple[object, ...]]]:
    """The trees of partitions 1 and 2 of a restored disk file, after fsck -n."""
    from tests.imaging.live_disk import _partition

    dev = run("losetup", "-f", "-P", "--show", image).stdout.strip()
    try:
        p1, p2 = _partition(dev, 1), _partition(dev, 2)
        run("e2fsck", "-f", "-n", p1)
        run("fsck.fat", "-n", p2)
        ids = run("blkid", "-o", "export", p1).stdout + run("blkid", "-o", "export", p2).stdout
        assert "LABEL=livroot" in ids and "LABEL=LIVEESP" in ids
        m1, m2 = work / "r1", work / "r2"
        m1.mkdir(parents=True)
        m2.mkdir()
        run("mount", "-o", "ro", p1, m1)
        try:
            run("fusefat", "-o", "ro", p2, m2)
            try:
                return snapshot(m1, True), snapshot(m2, False)
            finally:
                run("fusermount", "-u", m2)
        finally:
            run("umount", m1)
    finally:
        run("losetup", "-d", dev, check=False)


def test_live_disk_is_imaged_at_file_level_and_restored_exactly(disk: LiveDisk,
                                                                tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    clock = FixedClock()
    busy = (disk.root / "busy" / "churn", disk.esp / "CHURN.TXT")
    with writer(*busy):
        first = create(disk.dev, str(store), "first", 3, None, False, NullProgress(), clock)
    assert [how.split(" from ")[0] for _l, how in first.taken] == ["file level", "file level"]
    unstable = {os.fsdecode(i.path) for i in first.issues if i.kind == "unstable"}
    assert unstable <= {str(busy[0]), str(busy[1])}
    m = parse_manifest((store / "twofold-images/images/first.json").read_bytes(), "first")
    taken = {a.number: a for a in m.areas if a.role == "partition"}
    assert taken[1].files is not None and taken[1].files["params"]["type"] == "ext4"
    assert taken[2].files is not None and taken[2].files["params"]["label"] == "LIVEESP"
    uuid1 = run("blkid", "-s", "UUID", "-o", "value", f"{disk.dev}p1").stdout.strip()
    assert taken[1].files["params"]["uuid"] == uuid1

    out = tmp_path / "restored.img"
    got = restore(str(store), "first", str(out), None, NullProgress(), clock)
    assert len(got.files) == 2
    want1 = snapshot(disk.root, True, skip=("busy",))
    want2 = snapshot(disk.esp, False, skip=("CHURN", "LIVEESP"))
    tree1, tree2 = _restored_trees(out, tmp_path)
    assert {k: v for k, v in tree1.items() if not k.startswith("busy")} == want1
    assert {k: v for k, v in tree2.items() if not k.startswith(("CHURN", "LIVEESP"))} == want2
    versions = {hashlib.sha256(str(d).encode() * 300_000).hexdigest() for d in range(10)}
    for name, full, tree in (("busy/churn", busy[0], tree1), ("CHURN.TXT", busy[1], tree2)):
        digest = tree[name][-2 if tree is tree1 else 1]
        assert digest in versions or str(full) in unstable  # one whole version of it

    # a change: 1 MiB of new data and one small file edited; the second image stores that
    (disk.root / "dir5" / "new.bin").write_bytes(os.urandom(MiB))
    (disk.root / "dir1" / "sub" / "f2.txt").write_bytes(b"edited\n")
    sneaky = disk.root / "dir0" / "sub" / "f5.txt"  # same size and mtime, new content
    old = sneaky.stat()
    sneaky.write_bytes(sneaky.read_bytes().upper())
    os.utime(sneaky, ns=(old.st_atime_ns, old.st_mtime_ns))
    second = create(disk.dev, str(store), "second", 3, None, False, NullProgress(), clock)
    assert MiB <= second.stored_new_bytes < MiB + 400_000, second.stored_new_bytes
    assert second.reused_chunks > 0

    # images are deletable in any order: the second still verifies and restores whole
    delete(str(store), "first", NullProgress(), clock)
    checked = verify(str(store), None, NullProgress(), clock)
    files = {cid for a in parse_manifest((store / "twofold-images/images/second.json")
                                         .read_bytes(), "second").areas
             for _n, cid in a.file_chunks()}
    assert checked.chunks >= len(files) > 0 and not checked.damages
    again = tmp_path / "again.img"
    restore(str(store), "second", str(again), None, NullProgress(), clock)
    tree1, _tree2 = _restored_trees(again, tmp_path / "again")
    assert tree1["dir1/sub/f2.txt"][-2] == hashlib.sha256(b"edited\n").hexdigest()
    assert tree1["dir0/sub/f5.txt"][-2] == hashlib.sha256(sneaky.read_bytes()).hexdigest()
    assert tree1 == snapshot(disk.root, True)  # the writer has stopped: all as it is now


def test_a_smaller_disk_takes_the_image_when_the_data_fits(disk: LiveDisk,
                                                          tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    clock = FixedClock()
    create(disk.dev, str(store), "live", 3, None, False, NullProgress(), clock)
    small = tmp_path / "small.img"
    with open(small, "wb") as f:
        f.truncate(120 * MiB)
    got = restore(str(store), "live", str(small), None, NullProgress(), clock)
    assert got.dest_size == 120 * MiB and got.relaid[2] < 40 * MiB  # the ESP shrank
    tree1, tree2 = _restored_trees(small, tmp_path)
    assert tree1 == snapshot(disk.root, True)
    assert {k: v for k, v in tree2.items() if k != "LIVEESP"} == \
        snapshot(disk.esp, False, skip=("LIVEESP",))

    part = tmp_path / "root-alone.img"  # partition 1 alone, onto 40 of its 100 MiB
    with open(part, "wb") as f:
        f.truncate(40 * MiB)
    alone = restore(str(store), "live", str(part), 1, NullProgress(), clock)
    assert alone.files[0].size == 40 * MiB
    run("e2fsck", "-f", "-n", part)
    seen = tmp_path / "alone"
    seen.mkdir()
    run("mount", "-o", "ro,loop", part, seen)
    try:
        assert snapshot(seen, True) == snapshot(disk.root, True)
    finally:
        run("umount", seen)


def test_a_disk_too_small_even_for_the_data_is_refused_with_the_size_needed(
        disk: LiveDisk, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    runner = CliRunner()
    made = runner.invoke(app, ["image", "create", disk.dev, "--to", str(store), "--name",
                               "live"])
    assert made.exit_code == 0, made.output
    assert f"partition 1 (ext4): file level from {disk.root}" in made.output
    assert f"partition 2 (vfat): file level from {disk.esp}" in made.output
    listed = runner.invoke(app, ["image", "list", str(store)])
    assert re.search(r'partition 1 +ext4 .*label "livroot".*, file level', listed.output), \
        listed.output
    tiny = tmp_path / "tiny.img"
    with open(tiny, "wb") as f:
        f.truncate(16 * MiB)
    got = runner.invoke(app, ["image", "restore", str(store), "live", "--to", str(tiny)])
    assert got.exit_code == 1
    assert re.search(r"too small.*needs [\d,]+ \([\d,]+ more\)", got.output), got.output
    assert tiny.read_bytes()[:4096] == bytes(4096)  # nothing written


def test_grow_lets_the_last_partition_take_a_larger_disk(disk: LiveDisk,
                                                         tmp_path: Path) -> None:
    store = disk.root / "backups"  # the store on a partition being imaged: left out
    store.mkdir()
    clock = FixedClock()
    create(disk.dev, str(store), "live", 3, None, False, NullProgress(), clock)
    big = tmp_path / "big.img"
    with open(big, "wb") as f:
        f.truncate(300 * MiB)
    got = restore(str(store), "live", str(big), None, NullProgress(), clock, grow=True)
    assert got.relaid == {1: 100 * MiB, 2: 198 * MiB} and not got.gpt_moved
    dump = run("sfdisk", "-d", big).stdout
    assert "size=      405504" in dump  # 198 MiB in sectors: the ESP took the new room
    tree1, tree2 = _restored_trees(big, tmp_path)
    assert "backups" in tree1 and not [p for p in tree1 if p.startswith("backups/")]
    assert tree1 == snapshot(disk.root, True, skip=("backups/",))
    assert {k: v for k, v in tree2.items() if k != "LIVEESP"} == \
        snapshot(disk.esp, False, skip=("LIVEESP",))


@pytest.mark.slow
def test_a_running_bootable_disk_restored_onto_a_smaller_disk_boots(tmp_path: Path) -> None:
    from tests.bootdisks import boot_disk
    from tests.imaging.live_disk import _partition, need_live_tools
    from twofold.vm.qemu import FAIL_PATTERNS, Drive, Vm, VmSpec

    need_live_tools()
    disk = boot_disk("bios-gpt")  # BIOS boot partition, /boot and root on ext4
    copy = tmp_path / "live.raw"
    copy.write_bytes(disk.path.read_bytes())
    dev = run("losetup", "-f", "-P", "--show", copy).stdout.strip()
    store = tmp_path / "store"
    store.mkdir()
    clock = FixedClock()
    try:
        boot, root = tmp_path / "boot", tmp_path / "root"
        boot.mkdir()
        root.mkdir()
        run("mount", _partition(dev, 3), root)
        try:
            run("mount", _partition(dev, 2), boot)
            try:
                (root / "etc" / "written-while-running").write_text("yes\n")
                made = create(dev, str(store), "sys", 3, None, False, NullProgress(), clock)
            finally:
                run("umount", boot)
        finally:
            run("umount", root)
    finally:
        run("losetup", "-d", dev, check=False)
    assert [how.split(" from ")[0] for _l, how in made.taken] == \
        ["blocks", "file level", "file level"]
    smaller = tmp_path / "smaller.raw"
    with smaller.open("wb") as f:
        f.truncate(disk.size - 8 * MiB)
    got = restore(str(store), "sys", str(smaller), None, NullProgress(), clock)
    assert sum(got.relaid.values()) < disk.size - 8 * MiB
    with Vm(VmSpec([Drive(smaller)], firmware=disk.firmware, accel="tcg")) as vm:
        vm.start()
        hit = vm.wait_for_text({"marker": f"TWOFOLD-TEST-INIT up, root {disk.marker}",
                                **FAIL_PATTERNS}, 300)
        assert hit is not None, vm.serial_text()[-2000:]
        assert hit.name == "marker", vm.serial_text()[-2000:]


def test_a_mounted_xfs_is_imaged_at_file_level_and_restored(tmp_path: Path) -> None:
    from tests.imaging.live_disk import _partition, live_xfs

    store = tmp_path / "store"
    store.mkdir()
    clock = FixedClock()
    with live_xfs(tmp_path) as (dev, point):
        with writer(point / "busy" / "churn"):
            made = create(dev, str(store), "xfs", 3, None, False, NullProgress(), clock)
        assert made.taken == [("partition 1 (xfs)", f"file level from {point}")]
        want = snapshot(point, True, skip=("busy",))
        uuid = run("blkid", "-s", "UUID", "-o", "value", _partition(dev, 1)).stdout.strip()
        out = tmp_path / "restored.img"
        restore(str(store), "xfs", str(out), None, NullProgress(), clock)
        back = run("losetup", "-f", "-P", "--show", out).stdout.strip()
        try:
            part = _partition(back, 1)
            run("xfs_repair", "-n", part)
            ids = run("blkid", "-o", "export", part).stdout
            assert f"UUID={uuid}" in ids and "LABEL=livexfs" in ids
            seen = tmp_path / "seen"
            seen.mkdir()
            run("mount", "-o", "ro,nouuid", part, seen)  # the source is mounted still
            try:
                got = snapshot(seen, True)
            finally:
                run("umount", seen)
        finally:
            run("losetup", "-d", back, check=False)
    assert {k: v for k, v in got.items() if not k.startswith("busy")} == want


def test_grow_resizes_a_block_level_ext4_as_the_last_partition(tmp_path: Path) -> None:
    from tests.imaging.live_disk import _partition, need_live_tools

    need_live_tools()
    src = tmp_path / "plain.img"
    with open(src, "wb") as f:
        f.truncate(64 * MiB)
    run("sfdisk", "-q", src, stdin="label: gpt\nsize=60MiB, type=linux\n")
    dev = run("losetup", "-f", "-P", "--show", src).stdout.strip()
    try:
        run("mkfs.ext4", "-q", "-L", "plain", _partition(dev, 1))
    finally:
        run("losetup", "-d", dev, check=False)
    store = tmp_path / "store"
    store.mkdir()
    clock = FixedClock()
    made = create(str(src), str(store), "plain", 3, None, False, NullProgress(), clock)
    assert made.taken == [("partition 1 (ext4)", "blocks")]
    big = tmp_path / "big.img"
    with open(big, "wb") as f:
        f.truncate(128 * MiB)
    got = restore(str(store), "plain", str(big), None, NullProgress(), clock, grow=True)
    assert got.relaid == {1: 126 * MiB} and got.not_grown == []
    back = run("losetup", "-f", "-P", "--show", big).stdout.strip()
    try:
        part = _partition(back, 1)
        run("e2fsck", "-f", "-n", part)
        head = run("dumpe2fs", "-h", part).stdout
        count = int(next(x for x in head.splitlines() if x.startswith("Block count:"))
                    .split(":")[1])
        size = int(next(x for x in head.splitlines() if x.startswith("Block size:"))
                   .split(":")[1])
        assert count * size == 126 * MiB
    finally:
        run("losetup", "-d", back, check=False)


def test_a_file_that_changes_under_every_read_is_named_and_create_exits_3(
        disk: LiveDisk, tmp_path: Path) -> None:
    from tests.imaging.live_disk import changing_on_read

    store = tmp_path / "store"
    store.mkdir()
    restless = disk.root / "dir4" / "restless.log"
    restless.write_bytes(b"start\n")
    with changing_on_read(restless):
        got = CliRunner().invoke(app, ["image", "create", disk.dev, "--to", str(store),
                                       "--name", "busy"])
    assert got.exit_code == 3, got.output
    assert "restless.log" in got.output and "possibly inconsistent" in got.output
    m = parse_manifest((store / "twofold-images/images/busy.json").read_bytes(), "busy")
    files = {a.number: a.files for a in m.areas if a.files}
    assert files[1] is not None and files[1]["unstable"] == ["dir4/restless.log"]
    assert files[2] is not None and files[2]["unstable"] == []


def test_a_mounted_partition_given_alone_is_imaged_and_restored_as_one_volume(
        disk: LiveDisk, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    clock = FixedClock()
    made = create(f"{disk.dev}p1", str(store), "vol", 3, None, False, NullProgress(), clock)
    assert made.kind == "partition" and made.taken == [("volume", f"file level from "
                                                                  f"{disk.root}")]
    out = tmp_path / "vol.img"
    restore(str(store), "vol", str(out), None, NullProgress(), clock)
    assert out.stat().st_size == 100 * MiB
    run("e2fsck", "-f", "-n", out)
    seen = tmp_path / "seen"
    seen.mkdir()
    run("mount", "-o", "ro,loop", out, seen)
    try:
        assert snapshot(seen, True) == snapshot(disk.root, True)
    finally:
        run("umount", seen)


def test_a_damaged_file_chunk_stops_the_restore_naming_the_partition(disk: LiveDisk,
                                                                     tmp_path: Path) -> None:
    from twofold.blobs.objects import LocalObjects
    from twofold.chunks.chunkstore import ChunkStore
    from twofold.image.errors import ImageDamaged

    store = tmp_path / "store"
    store.mkdir()
    create(disk.dev, str(store), "one", 3, None, False, NullProgress(), FixedClock())
    m = parse_manifest((store / "twofold-images/images/one.json").read_bytes(), "one")
    area = next(a for a in m.areas if a.number == 1)
    assert area.files is not None
    chunks = ChunkStore(LocalObjects(store / "twofold-images"))
    chunks.load_index()
    cid = bytes.fromhex(area.files["data"][-1][1])  # a data chunk, loaded ahead of its use
    loc = chunks.location(cid)
    assert loc is not None
    pack = store / "twofold-images" / loc.pack
    data = bytearray(pack.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    with pytest.raises(ImageDamaged, match=re.escape(area.label)) as err:
        restore(str(store), "one", str(tmp_path / "out.img"), None, NullProgress(),
                FixedClock())
    assert "verify --heal" in str(err.value)
