"""Shared fixtures for the panel's tests: a real backup set with two runs on a target
folder, a set whose drive is away and overdue, an image store, and the panel's app."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from twofold.backup.engine import BackupOptions, backup
from twofold.core.progress import NullProgress
from twofold.jobs.clock import SystemClock
from twofold.jobs.state import JobRecord, State

CONFIG = """# my twofold config; this comment must survive the panel's edits
exclude = []

[sets.docs]
# the documents
sources = ["{src}"]
target = "{drive}"
schedule = "daily"

[sets.pics]
sources = ["{pics}"]
target = "{away}"
schedule = "daily"

[images.disk]
source = "{disk}"
target = "{drive}"
on_change = false
"""

OLD = b"the first words\n"
NEW = b"the second, longer words\n"


@dataclass
class World:
    """Paths of one test's backup world."""

    root: Path
    config: Path
    state: Path
    src: Path  # the Documents source folder
    drive: Path  # the connected target folder
    disk: Path  # a small disk image file to make images of


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Set docs backed up twice (letter.txt changed in between), set pics overdue with
    its drive away, and image job disk."""
    state = tmp_path / "state"
    monkeypatch.setenv("TWOFOLD_STATE_DIR", str(state))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    src = tmp_path / "home" / "Documents"
    (src / "sub").mkdir(parents=True)
    (src / "letter.txt").write_bytes(OLD)
    (src / "sub" / "notes.md").write_text("notes\n")
    pics = tmp_path / "home" / "Pictures"
    pics.mkdir()
    drive = tmp_path / "drive"
    drive.mkdir()
    disk = tmp_path / "disk.img"
    disk.write_bytes(os.urandom(256 * 1024) + bytes(768 * 1024))
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(src=src, drive=drive, pics=pics, away=tmp_path / "away",
                                    disk=disk))
    run_backup(src, drive)
    time.sleep(0.01)
    (src / "letter.txt").write_bytes(NEW)
    run_backup(src, drive)
    day = 86400 * 10**9
    State(state).save("pics", JobRecord(last_run_ns=time.time_ns() - 3 * day,
                                        last_ok_ns=time.time_ns() - 3 * day, result="ok"))
    yield World(tmp_path, config, state, src, drive, disk)


def run_backup(src: Path, drive: Path) -> None:
    """One backup run of set docs, as the CLI makes it."""
    backup([str(src)], str(drive), "docs", BackupOptions(), SystemClock(), NullProgress())
