"""Every test gets a private state folder (TWOFOLD_STATE_DIR), so what one test's runs
remember (logs, the drive each set was found on) never reaches another test or the home
folder of the machine running them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_state(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state folder for this test (the jobs tests set their own on top)."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("TWOFOLD_STATE_DIR", str(path))
    return path


NEED_FREE = 12 << 30
"""What the largest tests hold on the temporary folder's disk at once (a 6 GB exFAT drive
with a 4 GiB file in it, and that file restored): a full run's peak was 8.2 GB (df), and
room is left for the rest of the machine."""


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say at once, and why, when the disk cannot hold the largest tests: otherwise they
    fail one by one with "No space left on device" far into the run."""
    base = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    free = shutil.disk_usage(base).free
    if free < NEED_FREE:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (f"only {free / 2**30:.1f} GiB free under {base}; the "
                   f"tests need about {NEED_FREE >> 30} GiB: free some space (old "
                   f"pytest-of-* folders there can go), or point --basetemp elsewhere")
        if reporter is not None:
            reporter.write_line(f"WARNING: {message}", yellow=True, bold=True)
