"""A catalog lost whole: repair dates every row it makes from versions/ folders, the
oldest folder's too, so `restore --as-of` and `history` reach each version."""

from __future__ import annotations

import time
from pathlib import Path

from typer.testing import CliRunner

from twofold.backup.inspect import history
from twofold.backup.repair import repair
from twofold.cli.app import app
from twofold.core.progress import NullProgress

from .conftest import SET, FakeClock, catalog_rows, run_backup, run_restore, set_dir, write_file


def test_rows_of_the_oldest_versions_folder_are_reachable(tmp_path: Path) -> None:
    clock = FakeClock(start_ns=time.time_ns())
    src = tmp_path / "src"
    target = tmp_path / "drive"
    target.mkdir()
    for n in range(3):
        write_file(src / "f.txt", b"version %d\n" % n)
        write_file(src / "other.txt", b"same\n")
        run_backup(src, target, clock)
    (set_dir(target) / "catalog.sqlite").unlink()
    (set_dir(target) / "catalog.sqlite-journal").unlink(missing_ok=True)
    result = repair(str(target), SET, clock, NullProgress())
    assert result.versions >= 2 and not result.issues
    assert catalog_rows(target, "SELECT count(*) FROM entries WHERE first_run < 1") == [(0,)]
    versions = history(str(target), SET, "src/f.txt")
    assert len(versions) == 3
    got = []
    for v in versions:
        dest = tmp_path / f"as-of-{v.first_run}"
        assert run_restore(target, dest, as_of=str(v.first_run), paths=["src/f.txt"]).issues \
            == []
        got.append((dest / "src" / "f.txt").read_bytes())
    assert got == [b"version 0\n", b"version 1\n", b"version 2\n"]
    res = CliRunner().invoke(app, ["history", "--from", str(target), "--set", SET,
                                   "src/f.txt"])
    assert res.exit_code == 0, res.output
