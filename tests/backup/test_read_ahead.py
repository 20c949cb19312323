"""A catalog on a drive reached through FUSE is read ahead, in order, by a background
thread when it is opened (fsinfo.disk.read_ahead); one on a kernel file system is not."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import twofold.sets.target as target_mod
from twofold.fsinfo.disk import read_ahead
from twofold.sets.probe import through_fuse
from twofold.sets.target import SetDir

from ..drives import foreign_drive
from .conftest import SET, FakeClock, run_backup, write_file


def test_read_ahead_reads_the_whole_file_and_ignores_a_missing_one(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 5)
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(data)
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        got = real_read(fd, n)
        if threading.current_thread().name == "twofold-read-ahead":
            reads.append(len(got))
        return got

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "read", counting_read)
        read_ahead(str(path)).join(10)
        read_ahead(str(tmp_path / "missing")).join(10)  # no error: left to the readers
    assert sum(reads) == len(data) and reads[-1] == 0


def _opened_with_read_ahead(target: Path, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    calls: list[bytes] = []
    monkeypatch.setattr(target_mod, "read_ahead", calls.append)
    sd = SetDir(str(target), SET)
    sd.open_catalog().close()
    monkeypatch.undo()
    return calls


def test_only_a_catalog_behind_fuse_is_read_ahead(tmp_path: Path, clock: FakeClock,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    write_file(src / "a.txt", b"a")
    local = tmp_path / "local"
    local.mkdir()
    run_backup(src, local, clock)
    assert not through_fuse(os.fsencode(local))
    assert _opened_with_read_ahead(local, monkeypatch) == []
    with foreign_drive("exfat", tmp_path) as drive:
        run_backup(src, drive, clock)
        assert through_fuse(os.fsencode(drive))
        calls = _opened_with_read_ahead(drive, monkeypatch)
        assert calls == [SetDir(str(drive), SET).catalog]
