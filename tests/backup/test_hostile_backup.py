"""A backup into a hostile or awkward set: symlinks planted in current/, paths too long for
the drive, an interrupted run's operation that can never be done."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.backup.prune import prune
from twofold.cli.app import app
from twofold.core.errors import SafetyRefusal
from twofold.core.retention import Policy

from .conftest import (
    SET,
    FakeClock,
    assert_same_tree,
    listing,
    run_backup,
    run_restore,
    run_verify,
    set_dir,
    snapshot,
    write_file,
)


def test_symlink_planted_in_current_is_replaced_not_followed(tmp_path: Path,
                                                             clock: FakeClock) -> None:
    src = tmp_path / "src"
    write_file(src / "sub" / "b.txt", b"beta\n")
    write_file(src / "sub" / "deep" / "c.txt", b"gamma\n")
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"mine\n")
    cur = set_dir(target) / "current" / "src"
    os.rename(cur / "sub", tmp_path / "moved-away")
    (cur / "sub").symlink_to(outside)
    before = listing(outside)
    write_file(src / "sub" / "b.txt", b"beta, edited\n")
    write_file(src / "sub" / "deep" / "new.txt", b"new\n")
    write_file(src / "sub" / "n2.txt", b"new 2\n")
    res = run_backup(src, target, clock)
    assert res.stats.issues == []
    assert listing(outside) == before
    assert not (cur / "sub").is_symlink()
    assert (cur / "sub" / "b.txt").read_bytes() == b"beta, edited\n"
    assert (cur / "sub" / "deep" / "new.txt").read_bytes() == b"new\n"


def _deep(base: Path, names: int, length: int) -> bytes:
    """Make folders `names` deep, each named by `length` x's, below `base` (by relative
    opens: the whole path may pass PATH_MAX); returns the relative path."""
    fd = os.open(base, os.O_RDONLY)
    rel = []
    try:
        for i in range(names):
            name = (b"%d" % i) + b"x" * (length - 1)
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
            rel.append(name)
        out = os.open(b"f.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, b"deep\n")
        os.close(out)
    finally:
        os.close(fd)
    return b"/".join(rel)


def test_path_too_long_for_the_drive_is_skipped_then_gone(tmp_path: Path,
                                                          clock: FakeClock) -> None:
    """A source path whose copy would pass PATH_MAX is a per-item skip (exit 3, listed);
    once it is removed, the next run ends with exit 0."""
    src = tmp_path / "s"
    write_file(src / "ok.txt", b"fine\n")
    long_target = tmp_path / ("t" * 190) / ("u" * 190)  # SQLite opens paths < 512 bytes
    long_target.mkdir(parents=True)
    deep = _deep(src, 16, 230)  # ~3,700 bytes: the source path fits, the copy's does not
    assert len(os.fsencode(src)) + len(deep) < 4000
    runner = CliRunner()
    args = ["backup", str(src), "--to", str(long_target), "--set", SET, "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 3, first.output
    assert "longer than" in first.output
    assert '"skipped"' in first.output
    os.system(f"rm -rf {src / deep.split(b'/')[0].decode()}")
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    dest = tmp_path / "r"
    assert run_restore(long_target, dest).issues == []
    assert_same_tree(snapshot(dest / "s", with_hash=True), snapshot(src), "restored",
                     ignore=("mtime_ns",))


def test_interrupted_op_that_cannot_be_named_is_dropped(tmp_path: Path,
                                                        clock: FakeClock) -> None:
    """An interrupted run (of an older version) left a pending rename to a name the drive
    refuses: the next run drops it, rather than failing as every later run did."""
    src = tmp_path / "src"
    write_file(src / "a.txt", b"alpha\n")
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    long_rel = b"src/" + b"/".join([b"y" * 250] * 17) + b"/z"
    db = sqlite3.connect(set_dir(target) / "catalog.sqlite", isolation_level=None)
    with db:
        db.execute("INSERT INTO runs(name, started_ns, state, config, host) VALUES "
                   "('2026-06-01T000000Z', 1, 'running', '{}', 'h')")
        rid = db.execute("SELECT max(id) FROM runs").fetchone()[0]
        db.execute("INSERT INTO entries(path, kind, size, mtime_ns, ctime_ns, ino, mode, "
                   "uid, gid, rdev, first_run) VALUES(?, 'f', 1, 1, 1, 1, 420, 0, 0, 0, ?)",
                   (long_rel, rid))
        db.execute("INSERT INTO pending(run, seq, op, path, tmp) VALUES(?, 1, 'put', ?, "
                   "'00/x')", (rid, long_rel))
    db.close()
    tmp = set_dir(target) / ".tmp" / "00"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "x").write_bytes(b"z")
    write_file(src / "b.txt", b"beta\n")
    res = run_backup(src, target, clock)
    assert res.stats.issues == []
    assert (set_dir(target) / "current" / "src" / "b.txt").read_bytes() == b"beta\n"
    res = run_backup(src, target, clock)
    assert res.stats.issues == [] and res.stats.deleted == 0


def test_mass_delete_guard_counts_deletions_not_edits(tmp_path: Path,
                                                      clock: FakeClock) -> None:
    """Editing 2/3 of the files passes; deleting 2/3 is refused; moving 2/3 out of the
    source folder is a deletion too, renaming them inside it is not."""
    src = tmp_path / "src"
    for i in range(30):
        write_file(src / f"f{i:02d}", b"v1 %d\n" % i)
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    for i in range(20):
        write_file(src / f"f{i:02d}", b"v2, longer %d\n" % i)
    assert run_backup(src, target, clock).stats.changed == 20
    (src / "renamed").mkdir()
    for i in range(20):
        os.rename(src / f"f{i:02d}", src / "renamed" / f"f{i:02d}")
    assert run_backup(src, target, clock).stats.moved == 20
    elsewhere = tmp_path / "elsewhere"
    os.rename(src / "renamed", elsewhere)
    with pytest.raises(SafetyRefusal):
        run_backup(src, target, clock)
    os.rename(elsewhere, src / "renamed")
    for i in range(20, 30):
        (src / f"f{i:02d}").unlink()
    for i in range(10):
        (src / "renamed" / f"f{i:02d}").unlink()
    with pytest.raises(SafetyRefusal):
        run_backup(src, target, clock)


def test_crafted_catalog_rows_never_reach_outside(tmp_path: Path, clock: FakeClock) -> None:
    """Rows whose paths leave the set (a crafted catalog) are named by backup and verify
    and left alone: the file they point at outside is neither moved nor touched."""
    src = tmp_path / "src"
    write_file(src / "a.txt", b"alpha\n")
    for i in range(8):
        write_file(src / f"more{i}", b"more\n")
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    victim = tmp_path / "outside" / "x"
    write_file(victim, b"not yours\n")
    crafted = [b"../../../../outside/x", b"src/../../../../../outside/x"]
    db = sqlite3.connect(set_dir(target) / "catalog.sqlite", isolation_level=None)
    cols = [r[1] for r in db.execute("PRAGMA table_info(entries)") if r[1] != "id"]
    row = dict(zip(cols, db.execute(f"SELECT {', '.join(cols)} FROM entries WHERE path=?",
                                    (b"src/a.txt",)).fetchone(), strict=True))
    with db:
        for path in crafted:
            db.execute(f"INSERT INTO entries({', '.join(cols)}) VALUES "
                       f"({', '.join('?' * len(cols))})", [dict(row, path=path)[c] for c in cols])
        rid = db.execute("SELECT max(id) FROM runs").fetchone()[0]
        db.execute("INSERT INTO pending(run, seq, op, path) VALUES(?, 1, 'remove', ?)",
                   (rid, crafted[0]))
        closed = dict(row, path=b"../../../../../outside/x", until_run=rid, vrun=rid)
        db.execute(f"INSERT INTO entries({', '.join(cols)}) VALUES "
                   f"({', '.join('?' * len(cols))})", [closed[c] for c in cols])
    db.close()
    before = listing(tmp_path / "outside")
    write_file(src / "b.txt", b"beta\n")
    res = run_backup(src, target, clock)
    # the first row's crafted pending op was dropped (and the row closed) by recovery
    assert {i.path for i in res.stats.issues if i.kind == "unsafe"} == {crafted[1]}
    found = {i.path: i.kind for i in run_verify(target).problems}
    assert found == {b"../../../../../outside/x": "unsafe"}  # the open rows were closed
    assert run_backup(src, target, clock).stats.issues == []  # named once
    assert prune(str(target), SET, Policy(daily=1), UTC).files_removed >= 1
    assert listing(tmp_path / "outside") == before
    assert victim.read_bytes() == b"not yours\n"
