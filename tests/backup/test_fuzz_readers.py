"""Property tests of what twofold reads from files it did not write: a catalog (damaged
bytes, or rows with crafted paths) and the config file. Each gives a clear twofold error
or a result, never a traceback, and writes nothing it should not."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from twofold.backup.inspect import history, runs_and_target
from twofold.backup.restore import restore
from twofold.cli.app import app
from twofold.core.errors import ConfigError, TwofoldError
from twofold.core.progress import NullProgress
from twofold.jobs.config import load

from .conftest import SET, FakeClock, listing, run_backup, set_dir, write_file

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def made_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small backed-up set (two runs), made once for the module."""
    base = tmp_path_factory.mktemp("fuzzset")
    src = base / "src"
    for i in range(12):
        write_file(src / f"d{i % 3}" / f"f{i}.txt", b"content %d\n" % i)
    os.symlink("d0/f0.txt", src / "link")
    target = base / "target"
    target.mkdir()
    clock = FakeClock()
    run_backup(src, target, clock)
    write_file(src / "d1" / "f1.txt", b"changed\n")
    run_backup(src, target, clock)
    yield target


def _written(root: Path) -> dict[bytes, tuple[int, ...]]:
    """listing() without ctimes: SQLite, run as root, gives an existing journal the
    catalog's owner when it opens it (a ctime, no byte)."""
    return {p: v[:4] for p, v in listing(root).items()}


def _fresh_copy(made: Path, where: Path) -> Path:
    if where.exists():
        shutil.rmtree(where)
    shutil.copytree(made, where, symlinks=True)
    return where


def _read_everything(target: Path, dest: Path) -> None:
    """Every reading command; only twofold's errors may come out."""
    for call in (lambda: runs_and_target(str(target), SET),
                 lambda: history(str(target), SET, "src/d1/f1.txt"),
                 lambda: restore(str(target), SET, str(dest), [], None, False,
                                 NullProgress(), UTC)):
        with suppress(TwofoldError):
            call()


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)),
                      min_size=1, max_size=8))
def test_damaged_catalog_bytes(made_set: Path, tmp_path: Path,
                               flips: list[tuple[int, int]]) -> None:
    target = _fresh_copy(made_set, tmp_path / "t")
    cat = set_dir(target) / "catalog.sqlite"
    data = bytearray(cat.read_bytes())
    for at, xor in flips:
        data[at % len(data)] ^= xor
    cat.write_bytes(bytes(data))
    dest = tmp_path / "world" / "dest"
    dest.mkdir(parents=True, exist_ok=True)
    before = _written(tmp_path / "world")
    _read_everything(target, dest)
    after = _written(tmp_path / "world")
    assert [p for p in set(before) | set(after) if before.get(p) != after.get(p)
            and not p.startswith(b"dest")] == []


_PART = st.sampled_from([b"..", b".", b"", b"src", b"d0", b"x", b"\0", b"evil",
                         b"n" * 300, b"/", b"f0.txt"])
_PATH = st.lists(_PART, min_size=1, max_size=5).map(b"/".join)


@FUZZ
@given(rows=st.lists(st.tuples(_PATH, st.sampled_from(["f", "d", "l"]),
                               st.sampled_from([None, b"/", b"..", b"../../outside"]),
                               st.sampled_from([None, b"../../outside/x", b"src/d0/f0.txt"])),
                     min_size=1, max_size=10))
def test_crafted_rows_stay_in_dest(made_set: Path, tmp_path: Path,
                                   rows: list[tuple[bytes, str, bytes | None,
                                                    bytes | None]]) -> None:
    target = _fresh_copy(made_set, tmp_path / "world" / "t")
    db = sqlite3.connect(set_dir(target) / "catalog.sqlite", isolation_level=None)
    cols = [r[1] for r in db.execute("PRAGMA table_info(entries)") if r[1] != "id"]
    base = dict(zip(cols, db.execute(f"SELECT {', '.join(cols)} FROM entries WHERE "
                                     "path=?", (b"src/d0/f0.txt",)).fetchone(), strict=True))
    with db:
        for path, kind, link_target, link_to in rows:
            r = dict(base, path=path, kind=kind, link_to=link_to, first_run=1,
                     until_run=None, target=(link_target or b"/etc") if kind == "l" else None)
            db.execute(f"INSERT OR IGNORE INTO entries({', '.join(cols)}) VALUES "
                       f"({', '.join('?' * len(cols))})", [r[c] for c in cols])
    db.close()
    dest = tmp_path / "world" / "a" / "dest"
    dest.mkdir(parents=True, exist_ok=True)
    before = _written(tmp_path / "world")
    with suppress(TwofoldError):
        restore(str(target), SET, str(dest), [], None, False, NullProgress(), UTC)
    after = _written(tmp_path / "world")
    outside = [p for p in set(before) | set(after) if before.get(p) != after.get(p)
               and not p.startswith(b"a/dest") and p not in (b"a", b"")]
    assert outside == []


@FUZZ
@given(text=st.binary(max_size=300))
def test_config_bytes(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(text)
    before = listing(tmp_path)
    try:
        load(path)
    except ConfigError as err:
        assert str(err)
    assert listing(tmp_path) == before


def test_config_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'exclude = ["ok"]\n[sets.main]\nsources = ["/home/caf\xe9"]\n')
    res = CliRunner().invoke(app, ["--config", str(path), "status"])
    assert res.exit_code == 2, res.output
    assert "line 3" in res.output and "UTF-8" in res.output
    assert "Traceback" not in res.output
