"""Crafted catalogs and planted symlinks: a restore writes nothing outside its folder.

Rows with `..`, absolute paths, NUL bytes, overlong names, a symlink row with a file row
below it, hard links out of the folder, and symlinks planted in the destination are each
reported (exit 3) while the rest is restored; the whole tree around the destination is
listed before and after, so any byte written outside shows.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import twofold.fsinfo.beneath as beneath_mod
from twofold.cli.app import app
from twofold.core.paths import unsafe

from .conftest import SET, FakeClock, listing, run_backup, run_restore, set_dir, write_file


def _craft(target: Path, world: Path) -> dict[bytes, str]:
    """Add hostile rows to the set's catalog, each a copy of src/a.txt's row, and put
    that content where each row's copy would be read; returns path -> expected issue kind."""
    db = sqlite3.connect(set_dir(target) / "catalog.sqlite", isolation_level=None)
    cols = [r[1] for r in db.execute("PRAGMA table_info(entries)") if r[1] != "id"]
    row = db.execute(f"SELECT {', '.join(cols)} FROM entries WHERE path=?",
                     (b"src/a.txt",)).fetchone()
    base = dict(zip(cols, row, strict=True))
    abs_z = os.fsencode(world / "abs" / "z")
    hostile = {
        b"../../outside/x": "unsafe",
        b"src/../../outside/y": "unsafe",
        abs_z: "unsafe",
        b"src/evil": "exists",  # symlink row; src/evil/z below it makes a real folder
        b"src/planted/w": "unsafe",  # DEST/src/planted is a symlink planted before
        b"src/nul\0name": "unsafe",
        b"src/./dot": "unsafe",
        b"src//double": "unsafe",
        b"src/" + b"n" * 300: "unsafe",
        b"src/hl-out": "unsafe",  # a hard link whose first name leaves the folder
    }
    rows = []
    for path in [*hostile, b"src/evil/z"]:
        r = dict(base, path=path)
        if path == b"src/evil":
            r.update(kind="l", target=os.fsencode(world / "elsewhere"), hash=None, size=0)
        if path == b"src/hl-out":
            r.update(link_to=b"../../outside/x")
        rows.append(r)
    with db:
        db.executemany(f"INSERT INTO entries({', '.join(cols)}) VALUES "
                       f"({', '.join('?' * len(cols))})",
                       [tuple(r[c] for c in cols) for r in rows])
    db.close()
    content = (target / "src-a-content").read_bytes()
    cur = os.fsencode(set_dir(target) / "current")
    for path in hostile:
        if b"\0" not in path and len(path.rsplit(b"/", 1)[-1]) < 255 and path != b"src/evil":
            where = os.path.normpath(os.path.join(cur, path))
            os.makedirs(os.path.dirname(where), exist_ok=True)
            if not os.path.lexists(where):
                Path(os.fsdecode(where)).write_bytes(content)
    write_file(os.path.join(cur, b"src/evil/z"), content)
    return hostile


@pytest.fixture
def hostile_set(tmp_path: Path, clock: FakeClock) -> tuple[Path, Path, Path, dict[bytes, str]]:
    """(world, target, dest): a backed-up set with crafted rows, dest deep in `world`."""
    world = tmp_path / "world"
    src = world / "src"
    write_file(src / "a.txt", b"alpha\n" * 100)
    write_file(src / "sub" / "b.txt", b"beta\n")
    target = world / "target"
    target.mkdir()
    assert run_backup(src, target, clock).stats.issues == []
    (target / "src-a-content").write_bytes((src / "a.txt").read_bytes())
    hostile = _craft(target, world)
    dest = world / "a" / "b" / "dest"
    (dest / "src").mkdir(parents=True)
    (world / "elsewhere2").mkdir()
    (dest / "src" / "planted").symlink_to(world / "elsewhere2")
    return world, target, dest, hostile


def _written_outside(before: dict[bytes, object], after: dict[bytes, object],
                     dest_rel: bytes) -> list[bytes]:
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    return sorted(p for p in changed if p != dest_rel and not p.startswith(dest_rel + b"/")
                  and p not in (b"", os.path.dirname(dest_rel), b"a"))


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "walk"])
def test_crafted_rows_write_nothing_outside_dest(
        hostile_set: tuple[Path, Path, Path, dict[bytes, str]], openat2: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    world, target, dest, hostile = hostile_set
    monkeypatch.setattr(beneath_mod, "use_openat2", openat2)
    before = listing(world)
    result = run_restore(target, dest)
    after = listing(world)
    assert _written_outside(before, after, b"a/b/dest") == []
    kinds = {i.path: i.kind for i in result.issues}
    for path, kind in hostile.items():
        assert kinds.get(path) == kind, (path, result.issues)
    assert (dest / "src" / "a.txt").read_bytes() == b"alpha\n" * 100
    assert (dest / "src" / "sub" / "b.txt").read_bytes() == b"beta\n"
    assert (dest / "src" / "evil" / "z").is_file()  # a real folder, inside dest
    assert not (dest / "src" / "evil").is_symlink()
    assert os.listdir(world / "elsewhere2") == []
    assert not (world / "outside").exists() and not (world / "elsewhere").exists()


def test_symlinks_come_after_files_below_them(tmp_path: Path, clock: FakeClock) -> None:
    """A symlink row sorting before rows below its name is made last, so the rows land in
    a real folder and the symlink is refused, never followed."""
    world = tmp_path
    src = world / "src"
    write_file(src / "a.txt", b"alpha\n")
    target = world / "target"
    target.mkdir()
    run_backup(src, target, clock)
    (target / "src-a-content").write_bytes(b"alpha\n")
    _craft(target, world)
    dest = world / "dest"
    result = run_restore(target, dest, paths=["src/evil"])
    assert {(i.path, i.kind) for i in result.issues} == {(b"src/evil", "exists")}
    assert (dest / "src" / "evil" / "z").read_bytes() == b"alpha\n"
    assert not (world / "elsewhere").exists()


def test_cli_restore_exit_3_lists_rows(
        hostile_set: tuple[Path, Path, Path, dict[bytes, str]]) -> None:
    world, target, dest, _hostile = hostile_set
    before = listing(world)
    res = CliRunner().invoke(app, ["restore", "--from", str(target), "--set", SET,
                                   "--to", str(dest), "--json"])
    assert res.exit_code == 3, res.output
    assert '"kind": "unsafe"' in res.output
    assert _written_outside(before, listing(world), b"a/b/dest") == []


def test_planted_symlink_in_dest_with_overwrite(tmp_path: Path, clock: FakeClock) -> None:
    """--overwrite replaces a symlink planted where a file goes; it never writes through."""
    src = tmp_path / "src"
    write_file(src / "a.txt", b"alpha\n")
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    dest = tmp_path / "dest"
    (dest / "src").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me\n")
    (dest / "src" / "a.txt").symlink_to(victim)
    from datetime import UTC

    from twofold.backup.restore import restore
    from twofold.core.progress import NullProgress
    result = restore(str(target), SET, str(dest), [], None, True, NullProgress(), UTC)
    assert result.issues == []
    assert victim.read_bytes() == b"keep me\n"
    assert not (dest / "src" / "a.txt").is_symlink()
    assert (dest / "src" / "a.txt").read_bytes() == b"alpha\n"


@pytest.mark.parametrize("path,bad", [
    (b"a/b", False), (b"a", False), (b"", True), (b"/a", True), (b"a/../b", True),
    (b"..", True), (b"a/.", True), (b"a//b", True), (b"a\0b", True), (b"a/", True),
    (b"x" * 255, False), (b"x" * 256, True), (b"/".join([b"y" * 200] * 21), True),
])
def test_unsafe_paths(path: bytes, bad: bool) -> None:
    assert (unsafe(path) is not None) is bad


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "walk"])
def test_symlink_planted_on_the_drive_is_not_read_through(
        tmp_path: Path, clock: FakeClock, openat2: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """current/src/sub replaced on the drive by a symlink to a folder elsewhere holding a
    file with the right bytes: restore does not read through it (exit 3, named)."""
    monkeypatch.setattr(beneath_mod, "use_openat2", openat2)
    src = tmp_path / "src"
    write_file(src / "a.txt", b"alpha\n")
    write_file(src / "sub" / "b.txt", b"beta\n")
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    cur = set_dir(target) / "current" / "src"
    elsewhere = tmp_path / "elsewhere"
    (cur / "sub").rename(elsewhere)
    (cur / "sub").symlink_to(elsewhere)
    result = run_restore(target, tmp_path / "r")
    assert {(i.path, i.kind) for i in result.issues} == {(b"src/sub/b.txt", "unsafe")}
    assert (tmp_path / "r" / "src" / "a.txt").read_bytes() == b"alpha\n"
