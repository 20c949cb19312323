"""Helpers for tests of writes past the page cache (O_DIRECT): a spy on os.write that
records which writes were direct and can refuse or shorten them, and a check that skips
where the file system refuses direct writes."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from twofold.fsinfo import blockio
from twofold.fsinfo.blockio import DIRECT_ALIGN


class WriteSpy:
    """Wraps os.write: records (direct?, length) of each write; `fail` may raise instead."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[tuple[bool, int]] = []
        self.fail: OSError | None = None
        self.fail_after = 0  # direct writes that go through before `fail` is raised
        self._write = os.write
        monkeypatch.setattr(os, "write", self)

    def __call__(self, fd: int, data: memoryview) -> int:
        direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        if direct and self.fail is not None:
            if self.fail_after == 0:
                raise self.fail
            self.fail_after -= 1
            data = data[:DIRECT_ALIGN]  # a short write: the next one is asked for
        self.writes.append((direct, len(data)))
        return self._write(fd, data)


def direct_write_folder(tmp_path: Path) -> Path:
    """tmp_path, or a skip where its file system refuses direct writes."""
    probe = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    try:
        os.write(probe, memoryview(blockio.private_buffer(DIRECT_ALIGN)))
    except OSError:
        pytest.skip("this folder's file system refuses direct writes")
    finally:
        os.close(probe)
    return tmp_path
