"""A damaged catalog: every command says so clearly (exit 1, no traceback), and
`twofold repair` keeps what can be read, sets the rest right from current/, and the next
backup and restore are whole again. Damage is real: pages of the SQLite file overwritten."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twofold.backup.repair import RepairResult, repair
from twofold.core.errors import CatalogError
from twofold.core.progress import NullProgress
from twofold.sets.catalog import Catalog
from twofold.sets.salvage import check, read_table

from ..drives import foreign_drive
from .conftest import (
    SET,
    FakeClock,
    assert_same_tree,
    build_tree,
    run_backup,
    run_restore,
    run_verify,
    set_dir,
    snapshot,
    write_file,
)
from .test_foreign import foreign_tree

TABLE_LEAF, INDEX_LEAF = 0x0D, 0x0A  # first byte of a b-tree leaf of a table, an index


def pages_holding(db_file: Path, needle: bytes, kind: int = TABLE_LEAF) -> list[int]:
    """Page numbers (from 1) of the b-tree pages of `kind` whose bytes contain `needle`."""
    data = db_file.read_bytes()
    size = int.from_bytes(data[16:18], "big")
    size = 65536 if size == 1 else size
    found = []
    for n in range(1, len(data) // size + 1):
        page = data[(n - 1) * size:n * size]
        if page[100 if n == 1 else 0] == kind and needle in page:
            found.append(n)
    return found


def damage(db_file: Path, page: int) -> None:
    """Overwrite one page with bytes SQLite cannot make sense of."""
    data = db_file.read_bytes()
    size = int.from_bytes(data[16:18], "big")
    with open(db_file, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(b"\xab" * size)


def _twofold(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twofold", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, check=False)


def _two_runs(tmp_path: Path, clock: FakeClock) -> tuple[Path, Path]:
    src = build_tree(tmp_path / "src", files=400)
    target = tmp_path / "drive"
    target.mkdir()
    run_backup(src, target, clock)
    write_file(src / "docs" / "f000.bin", b"a second version")  # versions/ gets the first
    (src / "docs" / "letters" / "f001.bin").unlink()
    run_backup(src, target, clock)
    return src, target


def test_salvage_reads_every_row_but_those_of_damaged_pages(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    db.executemany("INSERT INTO t VALUES(?, ?)",
                   [(i * 3, b"row-%08d-" % i + b"x" * 30) for i in range(20_000)])
    db.commit()
    db.close()
    hit = sorted({pages_holding(path, b"row-%08d-" % i)[0] for i in (10, 7_000, 12_000, 19_990)})
    assert len(hit) == 4  # four leaves apart from each other, the last one the table's end
    lost = set()
    data = path.read_bytes()
    for page in hit:
        body = data[(page - 1) * 4096:page * 4096]
        lost |= {i for i in range(20_000) if b"row-%08d-" % i in body}
        damage(path, page)
    db = sqlite3.connect(path)
    assert check(db)  # SQLite's own check sees the damage
    queries = 0

    def counting(sql: str) -> None:
        nonlocal queries
        queries += sql.startswith("SELECT rowid")

    db.set_trace_callback(counting)
    got = read_table(db, "t", ["id", "v"])
    assert {r[0] // 3 for r in got.rows} == set(range(20_000)) - lost
    assert all(v == b"row-%08d-" % (i // 3) + b"x" * 30 for i, v in got.rows)
    assert len(got.gaps) == len(hit)
    assert queries < 10 + 60 * len(hit), queries  # stepping over the damage, not row by row


def test_a_damaged_catalog_is_a_clear_error_in_every_command(
        tmp_path: Path, clock: FakeClock) -> None:
    src, target = _two_runs(tmp_path, clock)
    catalog = set_dir(target) / "catalog.sqlite"
    damage(catalog, pages_holding(catalog, b"docs/f100.bin")[0])
    commands = [("backup", str(src), "--to", str(target), "--set", SET),
                ("backup", str(src), "--to", str(target), "--set", SET, "--dry-run"),
                ("verify", "--from", str(target), "--set", SET),
                ("restore", "--from", str(target), "--set", SET, "--to", str(tmp_path / "r"))]
    for walk in ({}, {"TWOFOLD_NO_NATIVE": "1"}):
        for args in commands:
            done = _twofold(*args, env=walk)
            assert done.returncode == 1, (args, done.stderr)
            assert f"the catalog {catalog} is damaged" in done.stderr, done.stderr
            assert "twofold repair" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(CatalogError, match="is damaged"):
        run_backup(src, target, clock)


def test_repair_keeps_what_it_can_and_the_next_backup_is_whole(
        tmp_path: Path, clock: FakeClock) -> None:
    src, target = _two_runs(tmp_path, clock)
    sd = set_dir(target)
    catalog = sd / "catalog.sqlite"
    damage(catalog, pages_holding(catalog, b"docs/f100.bin")[0])
    # a copy whose row survives goes missing, another is cut short: neither row can be
    # trusted any more
    (sd / "current" / "src" / "music" / "albums" / "one" / "f003.bin").unlink()
    os.truncate(sd / "current" / "src" / "data" / "big.bin", 1000)
    damaged = catalog.read_bytes()

    done = _twofold("repair", "--from", str(target), "--set", SET)
    assert done.returncode == 0, done.stderr
    assert "Repaired" in done.stdout and "2 rows closed" in done.stdout
    # the short copy's closed row and the row made from it follow each other, not overlap
    (closed, _), (made, until) = sqlite3.connect(catalog).execute(
        "SELECT first_run, until_run FROM entries WHERE path=? ORDER BY first_run",
        (b"src/data/big.bin",)).fetchall()
    assert until is None and made == 3 and closed < made
    kept = [p for p in sd.iterdir() if p.name.startswith("catalog.damaged-")]
    assert [p.name.endswith(".sqlite") for p in kept].count(True) == 1
    assert next(p for p in kept if p.name.endswith(".sqlite")).read_bytes() == damaged
    assert not check(sqlite3.connect(catalog))  # the new one is whole

    again = run_backup(src, target, clock)
    missing = src / "music" / "albums" / "one" / "f003.bin"
    assert again.stats.new == 1  # the missing copy, and the short one, copied again
    assert again.stats.bytes_copied == missing.stat().st_size + (src / "data" /
                                                                 "big.bin").stat().st_size
    assert run_verify(target).problems == []
    restored = tmp_path / "restored"
    run_restore(target, restored)
    assert_same_tree(snapshot(restored / "src"), snapshot(src), "the restore after repair")
    quiet = run_backup(src, target, clock)
    assert (quiet.stats.new, quiet.stats.changed, quiet.stats.metadata,
            quiet.stats.deleted) == (0, 0, 0, 0)


def test_repair_of_a_catalog_that_is_not_a_database_at_all(
        tmp_path: Path, clock: FakeClock) -> None:
    src, target = _two_runs(tmp_path, clock)
    catalog = set_dir(target) / "catalog.sqlite"
    damage(catalog, 1)  # the header and the schema: nothing can be read
    result = repair(str(target), SET, clock, NullProgress())
    assert result.problems and result.kept["entries"] == 0 and result.kept["runs"] == 0
    assert result.readded == sum(1 for _ in (src).rglob("*")) + 1  # and src itself
    # run 2's versions/ folder: its run made again, with the two files it kept
    assert result.versions == 2 and result.run_name is not None
    runs = sqlite3.connect(catalog).execute("SELECT name FROM runs ORDER BY id").fetchall()
    folders = sorted(p.name for p in (set_dir(target) / "versions").iterdir())
    # a run for what was there before the oldest versions/ folder, then one per folder
    assert [n for (n,) in runs][1:] == [*folders, result.run_name]
    assert runs[0][0] < folders[0]
    run_backup(src, target, clock)
    restored = tmp_path / "restored"
    run_restore(target, restored)
    assert_same_tree(snapshot(restored / "src"), snapshot(src), "the restore after a rebuild")
    assert run_verify(target).problems == []


def test_a_lost_catalog_is_made_anew_from_current(tmp_path: Path, clock: FakeClock) -> None:
    src, target = _two_runs(tmp_path, clock)
    (set_dir(target) / "catalog.sqlite").unlink()
    (set_dir(target) / "catalog.sqlite-journal").unlink(missing_ok=True)
    done = _twofold("repair", "--from", str(target), "--set", SET, "--json")
    assert done.returncode == 0, done.stderr
    assert '"damaged_copy": null' in done.stdout and "is missing" in done.stdout
    again = run_backup(src, target, clock)
    assert again.stats.new == 0 and again.stats.bytes_copied == 0  # hashed, not copied
    restored = tmp_path / "restored"
    run_restore(target, restored)
    assert_same_tree(snapshot(restored / "src"), snapshot(src), "the restore after a rebuild")


def test_repair_leaves_a_whole_catalog_alone(tmp_path: Path, clock: FakeClock) -> None:
    _src, target = _two_runs(tmp_path, clock)
    catalog = set_dir(target) / "catalog.sqlite"
    before = catalog.read_bytes()
    result: RepairResult = repair(str(target), SET, clock, NullProgress())
    assert result.intact and result.run_name is None
    assert catalog.read_bytes() == before
    assert not [p for p in set_dir(target).iterdir() if "damaged" in p.name]
    done = _twofold("repair", "--from", str(target), "--set", SET, "--json")
    assert done.returncode == 0 and '"intact": true' in done.stdout
    assert catalog.read_bytes() == before


def test_verify_names_a_damaged_index_and_repair_loses_no_row(
        tmp_path: Path, clock: FakeClock) -> None:
    src, target = _two_runs(tmp_path, clock)
    catalog = set_dir(target) / "catalog.sqlite"
    rows = sqlite3.connect(catalog).execute("SELECT count(*) FROM entries").fetchone()[0]
    damage(catalog, pages_holding(catalog, b"docs/f100.bin", INDEX_LEAF)[0])
    try:  # verify must not pass: it names the damage, or stops at it with a clear error
        found = [(i.kind, i.path) for i in run_verify(target).problems]
    except CatalogError as err:
        found = [("damaged", bytes(catalog))] if "is damaged" in err.message else []
    assert found == [("damaged", bytes(catalog))]
    result = repair(str(target), SET, clock, NullProgress())
    assert result.kept["entries"] == rows and result.gaps == 0
    assert (result.readded, result.closed) == (0, 0)
    assert run_verify(target).problems == []
    run_backup(src, target, clock)
    restored = tmp_path / "restored"
    run_restore(target, restored)
    assert_same_tree(snapshot(restored / "src"), snapshot(src), "the restore after repair")


@pytest.mark.parametrize("kind", ["exfat", "fat32"])
def test_repair_on_a_foreign_drive_then_a_whole_restore(
        kind: str, tmp_path: Path, clock: FakeClock) -> None:
    src = foreign_tree(tmp_path / "src" / "home", huge=False)
    with foreign_drive(kind, tmp_path, "1G") as drive:
        run_backup(src, drive, clock)
        catalog = set_dir(drive) / "catalog.sqlite"
        local = tmp_path / "catalog.sqlite"  # damaged here: fusefat cannot rewrite in place
        shutil.copyfile(catalog, local)
        damage(local, pages_holding(local, b"home/docs/a:b?.txt")[0])
        shutil.copyfile(local, catalog)
        result = repair(str(drive), SET, clock, NullProgress())
        assert result.problems and result.readded > 0
        # the names the drive forbids are stored encoded: without their rows, left over
        left = {i.path for i in result.issues if i.kind == "left"}
        with Catalog(str(catalog)) as repaired:
            stored = repaired.namer().rel(b"home/docs/a:b?.txt")
        assert stored != b"home/docs/a:b?.txt" and b"current/" + stored in left
        run_backup(src, drive, clock)
        assert not run_verify(drive).problems
        out = tmp_path / "restored"
        assert not run_restore(drive, out).issues
        assert_same_tree(snapshot(out / "home"), snapshot(src), f"the restore from {kind}")


def test_repair_finds_old_versions_again(tmp_path: Path) -> None:
    # runs at real times: repair dates a copy's content by its mtime, which for the
    # files build_tree writes without one is now
    clock = FakeClock(start_ns=time.time_ns())
    src = build_tree(tmp_path / "src", files=400)
    target = tmp_path / "drive"
    target.mkdir()
    run_backup(src, target, clock)
    first = snapshot(src)
    write_file(src / "docs" / "f000.bin", b"a second version")
    (src / "docs" / "letters" / "f001.bin").unlink()
    run_backup(src, target, clock)
    catalog = set_dir(target) / "catalog.sqlite"
    # the rows of run 1's f000 (now in versions/) and of the deleted letter
    for needle in (b"src/docs/f000.bin", b"src/docs/letters/f001.bin"):
        damage(catalog, pages_holding(catalog, needle)[0])
    with pytest.raises(CatalogError):
        run_restore(target, tmp_path / "before", as_of="1")
    result = repair(str(target), SET, clock, NullProgress())
    assert result.versions >= 2
    restored = tmp_path / "restored"
    assert not run_restore(target, restored, as_of="1").issues
    got = snapshot(restored / "src")
    # Every file of run 1 comes back with its content and metadata. What the lost rows
    # alone knew stays lost: a folder's metadata as of run 1 (folders are not kept in
    # versions/) and which files were hard links of each other.
    assert {p for p, n in got.items() if n.type == "dir"} == \
        {p for p, n in first.items() if n.type == "dir"}
    assert_same_tree({p: n for p, n in got.items() if n.type != "dir"},
                     {p: n for p, n in first.items() if n.type != "dir"},
                     "run 1 restored after repair", ignore=("links",))
