"""`image restore` to a disk: shown and confirmed by typing its name (or --yes), refused
without a terminal; old signatures wiped so that an MBR image over a GPT disk leaves one
clean table (real loop disks; root only)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.cli.app import app
from twofold.fsinfo.wipe import parse_wipefs

from .conftest import MiB, blank, mounted, root_only, run

runner = CliRunner()


def restore(*args: str, answer: str | None = None) -> tuple[int, str]:
    got = runner.invoke(app, ["image", "restore", *args], input=answer)
    return got.exit_code, got.output


def mbr_source(folder: Path) -> Path:
    """A 48 MiB MBR disk image with one FAT partition holding a file."""
    part = blank(folder / "part.img", 30 * MiB)
    run("mkfs.vfat", part)
    (folder / "hello.txt").write_text("hello\n")
    run("mcopy", "-i", part, folder / "hello.txt", "::/")
    disk = blank(folder / "mbr.img", 48 * MiB)
    run("sfdisk", "-q", disk, stdin="label: dos\nstart=2048, size=30MiB, type=c\n")
    with open(disk, "r+b") as f:
        f.seek(MiB)
        f.write(part.read_bytes())
    return disk


@contextmanager
def gpt_loop_disk(folder: Path) -> Iterator[str]:
    """A 64 MiB loop disk with a GPT and an ext4 file system in its partition (made
    beside it and copied in: the kernel here makes no partition devices for loops)."""
    image = blank(folder / "gpt.img", 64 * MiB)
    run("sgdisk", "-n", "1:2048:+40M", "-c", "1:oldroot", image)
    part = blank(folder / "ext4.img", 40 * MiB)
    run("mkfs.ext4", "-q", "-L", "OLDFS", part)
    with open(image, "r+b") as f:
        f.seek(MiB)
        f.write(part.read_bytes())
    dev = run("losetup", "-P", "-f", "--show", image).stdout.strip()
    try:
        yield dev
    finally:
        run("losetup", "-d", dev, check=False)


def inside(dev: str, start: int, size: int) -> list[str]:
    """The file-system signature blkid finds in [start, start + size) of `dev`."""
    got = run("blkid", "-p", "-o", "export", "-O", str(start), "-S", str(size), dev,
              check=False)
    return [line for line in got.stdout.splitlines() if line.startswith("TYPE=")]


def signatures(dev: str) -> list[str]:
    """The TYPE column of `wipefs` (listing only)."""
    lines = run("wipefs", "--noheadings", "--output", "TYPE", dev).stdout.split()
    return lines


@pytest.mark.parametrize("answer", [None, "wrong\n"])
def test_a_disk_is_not_written_unconfirmed(tmp_path: Path, answer: str | None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    src = mbr_source(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    assert runner.invoke(app, ["image", "create", str(src), "--to", str(store),
                               "--name", "m"]).exit_code == 0
    with gpt_loop_disk(tmp_path) as dev:
        if answer is not None:
            monkeypatch.setattr("twofold.cli.image_restore_cmd.can_ask", lambda: True)
        code, text = restore(str(store), "m", "--to", dev, answer=answer)
        if answer is None:
            assert code == 2 and "--yes" in text and "no terminal" in text, text
        else:
            assert code == 1 and "nothing was written" in text, text
            assert re.search(r"67\.1 MB, .*GPT partition table", text), text
            assert re.search(r'partition 1: 41\.9 MB, ext4, label "OLDFS", name "oldroot"',
                             text), text
            assert "type the disk's name" in text.lower()
        assert sorted(signatures(dev)) == ["PMBR", "gpt", "gpt"]
        assert inside(dev, MiB, 40 * MiB) == ["TYPE=ext4"]


def test_mbr_over_gpt_leaves_one_clean_table(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    src = mbr_source(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    assert runner.invoke(app, ["image", "create", str(src), "--to", str(store),
                               "--name", "m"]).exit_code == 0
    with gpt_loop_disk(tmp_path) as dev:
        monkeypatch.setattr("twofold.cli.image_restore_cmd.can_ask", lambda: True)
        name = os.path.basename(dev)
        code, text = restore(str(store), "m", "--to", dev, answer=f"{name}\n")
        assert code == 0, text
        assert "gpt" in text and "1 old partition zeroed" in text  # what was erased is told
        assert signatures(dev) == ["dos"]
        check = run("sgdisk", "-v", dev, check=False)
        assert check.returncode == 0 and "No problems found" in check.stdout, check.stdout
        assert "backup" not in check.stdout.lower()
        assert inside(dev, MiB, 30 * MiB) == ["TYPE=vfat"]
        assert inside(dev, 31 * MiB, 10 * MiB) == []  # nothing left of the old ext4 there
        got = run("mtype", "-i", f"{dev}@@{MiB}", "::/hello.txt").stdout
        assert got.replace("\r", "") == "hello\n"


def test_restore_with_yes_needs_no_terminal(tmp_path: Path) -> None:
    src = mbr_source(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    assert runner.invoke(app, ["image", "create", str(src), "--to", str(store),
                               "--name", "m"]).exit_code == 0
    with gpt_loop_disk(tmp_path) as dev:
        code, text = restore(str(store), "m", "--to", dev, "--yes", "--json")
        assert code == 0, text
        assert signatures(dev) == ["dos"]


def test_parse_wipefs() -> None:
    text = ("/dev/sdb1: 2 bytes were erased at offset 0x00000438 (ext4): 53 ef\n"
            "/dev/sdb: 8 bytes were erased at offset 0x00000200 (gpt): 45 46 49 20\n"
            "/dev/sdb: calling ioctl to re-read partition table: Success\n")
    assert parse_wipefs(text) == ["ext4", "gpt"]


pytestmark = root_only


def test_a_mounted_disk_is_refused_before_asking(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    src = mbr_source(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    assert runner.invoke(app, ["image", "create", str(src), "--to", str(store),
                               "--name", "m"]).exit_code == 0
    vol = blank(tmp_path / "vol.img", 64 * MiB)
    run("mkfs.ext4", "-q", vol)
    dev = run("losetup", "-f", "--show", vol).stdout.strip()
    try:
        with mounted(["mount", dev], tmp_path / "mnt"):
            monkeypatch.setattr("twofold.cli.image_restore_cmd.can_ask", lambda: True)
            code, text = restore(str(store), "m", "--to", dev, answer=os.path.basename(dev))
            assert code == 1 and "is mounted" in text and "Type the disk" not in text, text
    finally:
        run("losetup", "-d", dev, check=False)
