"""The local working copy of a catalog on a drive that only takes whole files (mirror.py)."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest

from twofold.sets.catalog import Catalog


def test_closing_leaves_no_working_copy_or_journal(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    drive = tmp_path / "drive"
    drive.mkdir()
    cat = Catalog(str(drive / "catalog.sqlite"), create=True, set_name="s", whole_files=True)
    with cat.transaction():
        cat.set_meta("note", "written through the working copy")
    names = sorted(p.name for p in work.iterdir())
    assert len(names) == 2 and names[1] == names[0] + "-journal", \
        f"expected the local working copy and SQLite's journal beside it, found {names}"
    cat.close()
    assert list(work.iterdir()) == [], "the working copy or its journal was left behind"
    published = sqlite3.connect(drive / "catalog.sqlite")
    row = published.execute("SELECT value FROM meta WHERE key='note'").fetchone()
    published.close()
    assert row == ("written through the working copy",)
