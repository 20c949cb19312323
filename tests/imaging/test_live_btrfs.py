"""Imaging a disk whose btrfs is mounted read-write (a subvolume of it, as a system mounts
@ at /) while a writer changes files: taken from read-only snapshots of every subvolume,
which are gone afterwards; restored as a new btrfs with the same UUID, label and
subvolumes, `btrfs check` clean and with the same files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.drives import run, tool
from tests.imaging.conftest import FixedClock
from tests.imaging.live_disk import _partition, fill, need_live_tools, snapshot, writer
from twofold.cli.app import app
from twofold.core.progress import NullProgress
from twofold.image.btrfssnap import HIDDEN, MOUNT_PREFIX
from twofold.image.create import create
from twofold.image.errors import ImageRefused
from twofold.image.restore import restore

MiB = 1 << 20
pytestmark = pytest.mark.root


@dataclass
class LiveBtrfs:
    """The disk file, its loop device, the btrfs partition and where @ is mounted."""

    image: Path
    dev: str
    part: str
    root: Path


@contextmanager
def top_level(part: str, where: Path) -> Iterator[Path]:
    """The top-level subvolume of the btrfs on `part` mounted at `where`."""
    where.mkdir(exist_ok=True)
    run("mount", "-o", "subvolid=5", part, where)
    try:
        yield where
    finally:
        run("umount", where)


@contextmanager
def live_btrfs(work: Path) -> Iterator[LiveBtrfs]:
    """A disk file with one 200 MiB btrfs partition holding subvolumes @ (the default,
    mounted read-write), @/home inside it, @data and a read-only @snap; filled."""
    need_live_tools()
    tool("mkfs.btrfs")
    image = work / "btrfs-disk.img"
    with open(image, "wb") as f:
        f.truncate(210 * MiB)
    run("sfdisk", "-q", image, stdin="label: gpt\nsize=200MiB, type=linux\n")
    dev = run("losetup", "-f", "-P", "--show", image).stdout.strip()
    root = work / "root"
    root.mkdir()
    try:
        part = _partition(dev, 1)
        run("mkfs.btrfs", "-q", "-L", "livebtrfs", part)
        with top_level(part, work / "top") as top:
            run("btrfs", "subvolume", "create", top / "@")
            run("btrfs", "subvolume", "create", top / "@" / "home")
            run("btrfs", "subvolume", "create", top / "@data")
            (top / "@data" / "data.bin").write_bytes(os.urandom(2 * MiB))
            (top / "loose.txt").write_text("in the top level\n")
            run("btrfs", "subvolume", "set-default", top / "@")
        run("mount", part, root)  # the default subvolume: @
        try:
            fill(root, posix=True)
            (root / "home" / "user").mkdir()
            (root / "home" / "user" / "notes.txt").write_text("mine\n" * 1000)
            with top_level(part, work / "top") as top:
                run("btrfs", "subvolume", "snapshot", "-r", top / "@", top / "@snap")
            yield LiveBtrfs(image, dev, part, root)
        finally:
            subprocess.run(["umount", str(root)], capture_output=True, check=False)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)


def leftovers(part: str, work: Path) -> list[str]:
    """Snapshot folders and top-level mounts twofold left on the btrfs on `part`."""
    with top_level(part, work / "look") as top:
        listed = run("btrfs", "subvolume", "list", top).stdout
        hidden = os.listdir(top / HIDDEN) if (top / HIDDEN).exists() else []
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if MOUNT_PREFIX in line]
    return [line for line in listed.splitlines() if HIDDEN in line] + hidden + mounts


def test_a_mounted_btrfs_is_imaged_from_snapshots_and_restored(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    clock = FixedClock()
    with live_btrfs(tmp_path) as fs:
        churn = fs.root / "busy" / "churn"
        with writer(churn):
            made = create(fs.dev, str(store), "btrfs", 3, None, False, NullProgress(), clock)
        assert made.taken == [("partition 1 (btrfs)",
                               "snapshot (5 btrfs subvolumes), read at file level")]
        assert not [i for i in made.issues if i.kind == "unstable"]  # a snapshot holds still
        assert leftovers(fs.part, tmp_path) == []
        uuid = run("blkid", "-s", "UUID", "-o", "value", fs.part).stdout.strip()
        with top_level(fs.part, tmp_path / "want") as top:
            want = snapshot(top, True, skip=("@/busy",))
            subs = run("btrfs", "subvolume", "list", top).stdout
        run("umount", fs.root)  # as from rescue media: onto the original disk, unmounted
        other = tmp_path / "other.img"  # another disk while the original is attached
        with pytest.raises(ImageRefused, match=f"{fs.part} holds a file system with that"):
            restore(str(store), "btrfs", str(other), None, NullProgress(), clock)
        assert not other.exists()  # refused before anything was written
        got = restore(str(store), "btrfs", fs.dev, None, NullProgress(), clock)
        assert len(got.files) == 1
        part = _partition(fs.dev, 1)
        run("btrfs", "check", "--readonly", part)
        ids = run("blkid", "-o", "export", part).stdout
        assert f"UUID={uuid}" in ids and "LABEL=livebtrfs" in ids
        with top_level(part, tmp_path / "seen") as top:
            tree = snapshot(top, True)
            again = run("btrfs", "subvolume", "list", top).stdout
            default = run("btrfs", "subvolume", "get-default", top).stdout
            readonly = run("btrfs", "subvolume", "list", "-r", top).stdout
            churned = (top / "@" / "busy" / "churn").read_bytes()
    paths = sorted(line.split(" path ")[1] for line in subs.splitlines())
    assert sorted(line.split(" path ")[1] for line in again.splitlines()) == paths == \
        ["@", "@/home", "@data", "@snap"]
    assert default.strip().endswith("path @")
    assert [line.split(" path ")[1] for line in readonly.splitlines()] == ["@snap"]
    # @snap/home is the stub of a subvolume left out of a snapshot: btrfs makes its times up
    stub = tree.pop("@snap/home")[:3], want.pop("@snap/home")[:3]
    assert stub[0] == stub[1]
    assert {k: v for k, v in tree.items() if not k.startswith("@/busy")} == want
    assert len(churned) == 300_000 and churned.isdigit()  # as the writer left it


def _users_of(path: str) -> list[int]:
    """Processes whose command line names `path`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if path.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def _killed_create(fs: LiveBtrfs, store: Path, name: str, work: Path) -> None:
    """Start `image create` in another process and kill -9 it once its snapshots exist."""
    proc = subprocess.Popen([sys.executable, "-m", "twofold", "image", "create", fs.dev,
                             "--to", str(store), "--name", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with top_level(fs.part, work / f"watch-{name}") as top:
            run_folder = top / HIDDEN / f"pid{proc.pid}@{socket.gethostname()}"
            while proc.poll() is None and not (run_folder / "top").exists():
                time.sleep(0.005)
            proc.kill()
            said = proc.communicate()[1].decode(errors="replace")
            assert proc.returncode == -signal.SIGKILL, f"it ended before the kill: {said}"
            while _users_of(f"{HIDDEN}/{run_folder.name}"):  # a btrfs command it started
                time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_snapshots_of_a_killed_create_are_removed_by_the_next_run_and_by_cleanup(
        tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    with live_btrfs(tmp_path) as fs:
        (fs.root / "slow.bin").write_bytes(os.urandom(60 * MiB))  # the kill comes first
        _killed_create(fs, store, "killed1", tmp_path)
        left = leftovers(fs.part, tmp_path)
        assert any(HIDDEN in line for line in left) and \
            any(MOUNT_PREFIX in line for line in left), left
        made = create(fs.dev, str(store), "next", 3, None, False, NullProgress(),
                      FixedClock())
        assert any(HIDDEN in line for line in made.cleaned), made.cleaned
        assert leftovers(fs.part, tmp_path) == []

        _killed_create(fs, store, "killed2", tmp_path)
        assert leftovers(fs.part, tmp_path) != []
        got = CliRunner().invoke(app, ["image", "cleanup"])
        assert got.exit_code == 0, got.output
        assert f"removed {fs.part}: {HIDDEN}/pid" in got.output, got.output
        assert leftovers(fs.part, tmp_path) == []
        again = CliRunner().invoke(app, ["image", "cleanup"])
        assert again.output.strip() == "nothing left by killed image runs"


def test_a_store_on_the_btrfs_being_imaged_is_left_out_and_a_smaller_disk_takes_it(
        tmp_path: Path) -> None:
    with live_btrfs(tmp_path) as fs:
        store = fs.root / "home" / "backups"  # in a nested subvolume
        store.mkdir()
        made = CliRunner().invoke(app, ["image", "create", fs.dev, "--to", str(store),
                                        "--name", "self"])
        assert made.exit_code == 0, made.output
        assert "partition 1 (btrfs): snapshot (5 btrfs subvolumes), read at file level" in \
            made.output, made.output
        kept = tmp_path / "store-copy"
        shutil.copytree(store, kept)
        run("umount", fs.root)
        run("losetup", "-d", fs.dev)
    tiny = tmp_path / "tiny.img"  # mkfs.btrfs makes nothing under about 110 MiB
    with open(tiny, "wb") as f:
        f.truncate(100 * MiB)
    with pytest.raises(ImageRefused, match="too small"):
        restore(str(kept), "self", str(tiny), None, NullProgress(), FixedClock())
    assert tiny.read_bytes()[:1 << 20] == bytes(1 << 20)  # nothing written
    out = tmp_path / "restored.img"  # a smaller disk: 150 of 210 MiB
    with open(out, "wb") as f:
        f.truncate(150 * MiB)
    got = restore(str(kept), "self", str(out), None, NullProgress(), FixedClock())
    assert got.relaid[1] < 150 * MiB
    back = run("losetup", "-f", "-P", "--show", out).stdout.strip()
    try:
        run("btrfs", "check", "--readonly", _partition(back, 1))
        with top_level(_partition(back, 1), tmp_path / "seen") as top:
            assert (top / "@" / "home" / "backups").is_dir()
            assert list((top / "@" / "home" / "backups").iterdir()) == []
            assert (top / "@" / "home" / "user" / "notes.txt").read_text() == "mine\n" * 1000
    finally:
        run("losetup", "-d", back, check=False)
