"""Copies heal: what verify finds damaged or missing, the next backup (or `verify --heal`)
copies again from a source that still matches; a wrong catalog hash is named as such."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from twofold.backup.verify import verify
from twofold.cli.app import app
from twofold.core.progress import NullProgress

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


def _flip(path: Path, at: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def _damage(target: Path) -> list[str]:
    """Flip a bit in three copies, delete a fourth and a whole folder of them."""
    cur = set_dir(target) / "current" / "src"
    damaged = ["docs/f000.bin", "data/big.bin", "pics/f002.bin"]
    for rel in damaged:
        _flip(cur / rel, 7 if rel != "data/big.bin" else 1_000_000)
    (cur / "docs" / "script.sh").unlink()
    shutil.rmtree(cur / "music")
    return [*damaged, "docs/script.sh"]


def _tree(tmp_path: Path, clock: FakeClock) -> tuple[Path, Path]:
    src = build_tree(tmp_path / "src", seed=5)
    for name in ("docs/f000.bin", "pics/f002.bin"):
        if (src / name).stat().st_size < 8:
            write_file(src / name, b"0123456789abcdef")
    target = tmp_path / "target"
    target.mkdir()
    assert run_backup(src, target, clock).stats.issues == []
    return src, target


def test_next_backup_heals_what_verify_found(tmp_path: Path, clock: FakeClock) -> None:
    src, target = _tree(tmp_path, clock)
    _damage(target)
    found = run_verify(target).problems
    kinds = {i.kind for i in found}
    assert kinds == {"damaged", "missing"}, found
    assert len(found) >= 5  # three flipped, one deleted, the files of music/
    result = run_backup(src, target, clock)
    assert result.stats.healed == len(found)
    assert result.stats.bytes_copied == 0  # nothing changed in the source
    assert run_verify(target).problems == []
    dest = tmp_path / "r"
    assert run_restore(target, dest).issues == []
    assert_same_tree(snapshot(dest / "src"), snapshot(src), "restored after healing",
                     ignore=("mtime_ns",))
    assert run_backup(src, target, clock).stats.healed == 0  # listed no more


def test_verify_heal_heals_at_once(tmp_path: Path, clock: FakeClock) -> None:
    src, target = _tree(tmp_path, clock)
    _damage(target)
    args = ["verify", "--from", str(target), "--set", SET, "--heal", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert '"healed": ' in res.output and '"healed": 0' not in res.output
    assert run_verify(target).problems == []
    assert (set_dir(target) / "current" / "src" / "docs" / "script.sh").read_bytes() == \
        (src / "docs" / "script.sh").read_bytes()


def test_source_changed_since_is_not_used_to_heal(tmp_path: Path, clock: FakeClock) -> None:
    src, target = _tree(tmp_path, clock)
    cur = set_dir(target) / "current" / "src"
    _flip(cur / "docs" / "f000.bin")
    run_verify(target)
    write_file(src / "docs" / "f000.bin", b"edited since\n")
    result = run_backup(src, target, clock)
    assert result.stats.healed == 0
    assert result.stats.changed == 1
    assert (cur / "docs" / "f000.bin").read_bytes() == b"edited since\n"
    assert {i.kind for i in result.stats.issues} == {"not healed"}  # the old version's copy
    assert run_backup(src, target, clock).stats.issues == []  # named once


def test_wrong_catalog_hash_is_a_catalog_error(tmp_path: Path, clock: FakeClock) -> None:
    _src, target = _tree(tmp_path, clock)
    db = sqlite3.connect(set_dir(target) / "catalog.sqlite", isolation_level=None)
    (h,) = db.execute("SELECT hash FROM entries WHERE path=?",
                      (b"src/docs/f000.bin",)).fetchone()
    flipped = bytes([h[0] ^ 1]) + bytes(h[1:])
    db.execute("UPDATE entries SET hash=? WHERE path=?", (flipped, b"src/docs/f000.bin"))
    db.close()
    found = run_verify(target).problems
    assert [(i.path, i.kind) for i in found] == [(b"src/docs/f000.bin", "catalog")]
    healed = verify(str(target), SET, NullProgress(), heal=True)
    assert healed.fixed_hashes == 1
    assert run_verify(target).problems == []
    assert run_restore(target, tmp_path / "r").issues == []


def test_verify_on_a_whole_set_leaves_the_catalog_untouched(tmp_path: Path,
                                                             clock: FakeClock) -> None:
    _src, target = _tree(tmp_path, clock)
    cat = set_dir(target) / "catalog.sqlite"
    before = (cat.stat().st_mtime_ns, cat.read_bytes())
    assert run_verify(target).problems == []
    assert (cat.stat().st_mtime_ns, cat.read_bytes()) == before


def test_verify_refuses_while_a_run_holds_the_lock(tmp_path: Path, clock: FakeClock) -> None:
    """verify takes the set's lock shared: while a run holds it, verify refuses and
    reports no damage (test_processes stops a real run half-way)."""
    from twofold.core.errors import TargetError
    from twofold.sets.target import SetDir

    _src, target = _tree(tmp_path, clock)
    sd = SetDir(str(target), SET)
    with sd.lock():
        try:
            run_verify(target)
        except TargetError as err:
            assert "in use" in str(err)
        else:
            raise AssertionError("verify ran while a run held the set's lock")
    assert run_verify(target).problems == []
