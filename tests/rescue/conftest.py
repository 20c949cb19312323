"""Drives for the rescue tests: a small MBR disk imaged into a store on an ext4 loop
device, and blank loop disks to restore onto (root only); the rescue ISO of this checkout,
built once and cached by its content key under /var/cache/twofold-test/rescue
(TWOFOLD_RESCUE_CACHE), or the one TWOFOLD_RESCUE_ISO names."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.drives import IS_ROOT, NOT_ROOT_REASON, loop_device, mounted, run
from tests.image.conftest import make_tree
from twofold.core.progress import NullProgress
from twofold.rescue.errors import BuildError

MiB = 1 << 20
SOURCE_SIZE = 24 * MiB
CACHE = Path(os.environ.get("TWOFOLD_RESCUE_CACHE", "/var/cache/twofold-test/rescue"))


class Clock:
    """One second per reading from a fixed start."""

    def __init__(self) -> None:
        self.ns = 1_767_225_600_000_000_000

    def now_ns(self) -> int:
        self.ns += 1_000_000_000
        return self.ns


def source_disk(folder: Path) -> Path:
    """An MBR disk with one ext4 partition full of seeded files."""
    tree = make_tree(folder / "tree", seed=5)
    part = folder / "part.img"
    run("truncate", "-s", f"{SOURCE_SIZE - MiB}", part)
    run("mkfs.ext4", "-q", "-F", "-d", tree, part)
    disk = folder / "disk.img"
    run("truncate", "-s", f"{SOURCE_SIZE}", disk)
    run("sfdisk", "-q", disk, stdin="label: dos\nstart=2048, type=83\n")
    with open(disk, "r+b") as f:
        f.seek(MiB)
        f.write(part.read_bytes())
        f.seek(0)
        f.write(b"\xeb\x63BOOTCODE" + bytes(200))  # something in the boot code area
    part.unlink()
    return disk


@dataclass
class Rig:
    """A store drive (loop, ext4, one image "pc-1"), a big and a small blank disk."""

    source: Path
    store_dev: str
    target_dev: str
    small_dev: str
    target_file: Path
    base: Path
    devices: list[str] = field(default_factory=list)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """The drives of a guided restore, attached as loop devices for the test."""
    if not IS_ROOT:
        pytest.skip(f"the guided restore {NOT_ROOT_REASON}")
    from twofold.backup.engine import BackupOptions, backup
    from twofold.image.create import create

    source = source_disk(tmp_path)
    store = tmp_path / "store.img"
    run("truncate", "-s", "64M", store)
    run("mkfs.ext4", "-q", "-F", "-L", "BACKUP", store)
    with mounted(["mount", "-o", "loop", str(store)], tmp_path / "mnt") as mnt:
        create(str(source), str(mnt), "pc-1", 3, None, False, NullProgress(), Clock())
        backup([str(tmp_path / "tree")], str(mnt), "docs", BackupOptions(), Clock(),
               NullProgress())
    target = tmp_path / "target.img"
    run("truncate", "-s", "40M", target)
    small = tmp_path / "small.img"
    run("truncate", "-s", "8M", small)
    with ExitStack() as stack:
        devs = [stack.enter_context(loop_device(p)) for p in (store, target, small)]
        yield Rig(source, devs[0], devs[1], devs[2], target, tmp_path / "drives", devs)


Answer = str | Callable[[list[str]], str]


class Scripted:
    """A console that answers from a script and keeps what the guide said."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = list(answers)
        self.lines: list[str] = []

    def say(self, text: str) -> None:
        self.lines.append(text)

    def ask(self, prompt: str) -> str:
        self.lines.append(prompt)
        if not self.answers:
            raise EOFError
        a = self.answers.pop(0)
        return a(self.lines) if callable(a) else a

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def number_of(device: str) -> Callable[[list[str]], str]:
    """An answer: the number the last list gave `device`."""
    def pick(lines: list[str]) -> str:
        for line in reversed(lines):
            if f") {device} " in line:
                return line.strip().split(")")[0]
        raise AssertionError(f"{device} was not listed")
    return pick


@pytest.fixture(scope="session")
def rescue_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rescue ISO of this checkout (built, or taken from the test cache), or the one
    TWOFOLD_RESCUE_ISO names."""
    given = os.environ.get("TWOFOLD_RESCUE_ISO")
    if given:
        return Path(given)
    if not IS_ROOT:
        pytest.skip("building the rescue ISO needs root (mmdebstrap, chroot)")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("QEMU is not installed (Debian package qemu-system-x86)")
    from twofold.rescue import host
    from twofold.rescue.build import build

    try:
        host.require_tools()
    except BuildError as e:
        pytest.skip(f"{e.message}: {e.hint}")
    out = tmp_path_factory.mktemp("rescue") / "twofold-rescue.iso"
    build(str(out), None, CACHE, NullProgress(), Clock())
    return out
