"""Every test gets a private state folder (TWOFOLD_STATE_DIR), so what one test's runs
remember (logs, the drive each set was found on) never reaches another test or the home
folder of the machine running them."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_state(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state folder for this test (the jobs tests set their own on top)."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("TWOFOLD_STATE_DIR", str(path))
    return path
