"""The walk in C plans exactly what the walk in Python plans: the same changes, with the
same entries and catalog rows, in the same order, and the same counts, over random trees
and random changes, for the whole tree and for ranges; it reports unreadable folders,
keeps within the descriptor limit and leaves no descriptor open."""

from __future__ import annotations

import itertools
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from twofold.backup.engine import BackupOptions, backup
from twofold.backup.planproc import Range, _Links, plan_range
from twofold.core.diff import Action, Change, Tally
from twofold.core.progress import NullProgress
from twofold.fsinfo import fastwalk
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Source
from twofold.sets.catalog import Catalog

from .test_planproc import Clock

REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0


def test_built_where_required() -> None:
    """CI sets TWOFOLD_REQUIRE_NATIVE: there the module must have been built."""
    if os.environ.get("TWOFOLD_REQUIRE_NATIVE"):
        assert fastwalk.available(), "the walk in C was not built (see setup.py)"
    elif not fastwalk.available():
        pytest.skip("the walk in C is not built here (no C compiler or sqlite3.h)")


needs_native = pytest.mark.skipif(not fastwalk.available(),
                                  reason="the walk in C is not built here")


NAMES = ["a", "a.b", "a-b", "a0", "a b", "b", "Été", "日本", "x.tmp", ".cache", "z"]


def _grow(root: Path, rnd: random.Random, n: int) -> None:
    """n random entries: folders, files of a few sizes, symlinks, hard links, odd names."""
    folders = [root]
    files: list[Path] = []
    for i in range(n):
        parent = rnd.choice(folders)
        name = f"{rnd.choice(NAMES)}{i % 5 if rnd.random() < 0.5 else ''}"
        if rnd.random() < 0.05:
            name = os.fsdecode(b"caf\xe9" + str(i).encode())
        p = parent / name
        if p.exists() or p.is_symlink():
            continue
        r = rnd.random()
        if r < 0.2:
            p.mkdir()
            folders.append(p)
        elif r < 0.85:
            p.write_bytes(os.urandom(rnd.choice((0, 1, 100, 5000))))
            files.append(p)
        elif r < 0.93:
            os.symlink(rnd.choice(("a", "../b", "nowhere", str(i))), p)
        elif files:
            os.link(rnd.choice(files), p)


def _entries(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        out += [Path(dirpath) / n for n in dirnames + filenames]
    return sorted(out)


def _mutate(root: Path, rnd: random.Random) -> None:
    """Edits of every kind a run must notice, and some it must not."""
    for p in rnd.sample(_entries(root), k=min(40, len(_entries(root)))):
        if not (p.exists() or p.is_symlink()):
            continue
        r = rnd.random()
        st = p.lstat()
        if p.is_symlink():
            p.unlink()
            os.symlink("retargeted", p)
        elif p.is_dir():
            if r < 0.2:
                os.chmod(p, 0o700)
            elif r < 0.3:
                subprocess.run(["rm", "-rf", str(p)], check=True)
            elif r < 0.4:
                p.rename(p.with_name(p.name + "-moved"))
            else:
                (p / f"new{rnd.randrange(1000)}").write_text("new")
        elif r < 0.15:
            p.write_bytes(b"longer content " * 3)
        elif r < 0.3:  # same size and mtime, new bytes: only ctime tells
            p.write_bytes(bytes(st.st_size))
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif r < 0.4:
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
        elif r < 0.5:
            os.chmod(p, 0o600)
        elif r < 0.55 and ROOT:
            os.chown(p, 1234, 4321)
        elif r < 0.65:
            p.unlink()
        elif r < 0.72:
            p.rename(p.with_name(p.name + "-renamed"))
        elif r < 0.78:
            os.link(p, p.with_name(p.name + "-link"))
        elif r < 0.84:  # replaced by a copy: same size and mtime, another inode
            data = p.read_bytes()
            p.unlink()
            p.write_bytes(data)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif r < 0.9:
            p.unlink()
            p.mkdir()
        else:
            os.mkfifo(p.with_name(p.name + "-fifo"))


def _row(item: Change | Tally) -> tuple[object, ...]:
    if isinstance(item, Tally):
        return ("tally", item.seen, item.same, item.files, item.nbytes)
    e, old = item.entry, item.old
    return (item.action, item.path, item.reason,
            None if e is None else (e.signature(), e.dev, e.nlink, e.link_to),
            None if old is None else (old.id, old.signature(), old.hash))


def _plan(sources: list[Source], db: str, parts: list[Range], excludes: list[str],
          native: bool, monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Every range in turn, as the workers and the parent do it."""
    if native:
        monkeypatch.delenv(fastwalk.OFF, raising=False)
    else:
        monkeypatch.setenv(fastwalk.OFF, "1")
    links = _Links()
    out = []
    for part in parts:
        for item in plan_range(sources, Excluder(excludes), db, part, len(parts) == 1):
            held = isinstance(item, Change) and item.action is Action.HELD
            out.append(_row(links.decide(item) if held else item))  # type: ignore[arg-type]
    return out


def _backed_up(root: Path, seed: int, n: int, change: bool = True) -> tuple[
        list[Source], str, list[bytes]]:
    rnd = random.Random(seed)
    src = root / "src"
    src.mkdir()
    _grow(src, rnd, n)
    (src / ".twofoldignore").write_text("*.tmp\n")
    target = root / "target"
    target.mkdir()
    backup([str(src)], str(target), "s", BackupOptions(), Clock(), NullProgress())
    if change:
        _mutate(src, rnd)
        _grow(src, rnd, n // 10)
    db = str(target / "twofold/s/catalog.sqlite")
    catalog = Catalog(db)
    try:
        paths = [bytes(r.path) for r in catalog.current()]
    finally:
        catalog.close()
    return [Source(b"src", os.fsencode(src))], db, paths


@needs_native
@pytest.mark.parametrize("seed", range(8))
def test_random_changes_are_planned_alike(tmp_path: Path, seed: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sources, db, paths = _backed_up(tmp_path, seed, 400)
    rnd = random.Random(seed)
    cuts = sorted({*rnd.sample(paths, 3), paths[0] + b"\x00", b"src/a/"})
    splits = [[Range()], [Range(b"", cuts[1]), Range(cuts[1], None)],
              [Range(b"", cuts[0]), *(Range(a, b) for a, b in itertools.pairwise(cuts)),
               Range(cuts[-1], None)]]
    for excludes in ([], ["a-b/", "*.b"], ["a/a*", "!a/a.b", "**/z*/"],
                     ["a-b/", "a/a*", "/b/a", "new*", "c.b"]):  # a prefilter: first_bytes
        for parts in splits:
            python = _plan(sources, db, parts, excludes, False, monkeypatch)
            native = _plan(sources, db, parts, excludes, True, monkeypatch)
            assert native == python, (parts, excludes)
    actions = {r[0] for r in python}
    assert {Action.NEW, Action.DELETED, Action.CHANGED, Action.META} <= actions, actions


def _native_pairs(sources: list[Source], db: str) -> Iterator[object]:
    from twofold.sets.rows import sig_query
    return fastwalk.pairs(sources, Excluder([]), b"", None, db, sig_query(False),
                          lambda raw: raw, True, Tally())


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@needs_native
def test_no_descriptor_is_left_open(tmp_path: Path) -> None:
    sources, db, _ = _backed_up(tmp_path, 99, 300)
    before = _open_fds()
    walk = _native_pairs(sources, db)
    next(walk)
    next(walk)
    assert _open_fds() > before  # folders and the catalog are open mid-walk
    walk.close()  # type: ignore[attr-defined]
    assert _open_fds() == before
    assert sum(1 for _ in _native_pairs(sources, db)) > 0
    assert _open_fds() == before


@needs_native
def test_tree_deeper_than_the_descriptor_limit(tmp_path: Path) -> None:
    """120 levels with 100 descriptors allowed: past MAX_HELD levels the walk goes by
    path, so it neither runs out nor skips anything; the walk in Python agrees."""
    (tmp_path / "src").mkdir()
    deep = tmp_path.joinpath("src", *["d"] * 120)
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("here")
    target = tmp_path / "target"
    target.mkdir()
    backup([str(tmp_path / "src")], str(target), "s", BackupOptions(), Clock(),
           NullProgress())
    (deep / "bottom.txt").write_text("changed")
    code = (
        "import os, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))\n"
        "from twofold.backup.planproc import Range, plan_range\n"
        "from twofold.fsinfo.excludes import Excluder\n"
        "from twofold.fsinfo.scan import Source\n"
        "items = plan_range([Source(b'src', os.fsencode(sys.argv[1]))], Excluder([]),\n"
        "                   sys.argv[2], Range(), True)\n"
        "print([(c.action.value, c.path[-10:].decode()) for c in items\n"
        "       if hasattr(c, 'action')], [t.same for t in items if hasattr(t, 'same')])\n")
    outs = []
    for off in ("", "1"):
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), fastwalk.OFF: off}
        outs.append(subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "src"),
             str(target / "twofold/s/catalog.sqlite")],
            capture_output=True, text=True, check=True, env=env).stdout)
    assert outs[0] == outs[1]
    assert "('changed', 'bottom.txt')" in outs[0]


UNREADABLE = """
import json, os, sys
from twofold.backup.planproc import Range, plan_range
from twofold.fsinfo import fastwalk
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Source
if os.geteuid() == 0:  # after the imports: Python itself may live in /root
    os.setgid(65534)
    os.setuid(65534)
out = []
for off in ("1", ""):
    os.environ[fastwalk.OFF] = off
    items = plan_range([Source(b"src", os.fsencode(sys.argv[1]))], Excluder([]),
                       sys.argv[2], Range(), True)
    out.append([(c.action.value, os.fsdecode(c.path), c.reason) for c in items
                if hasattr(c, "action")])
print(json.dumps(out))
"""


@needs_native
def test_an_unreadable_folder_is_reported_alike() -> None:
    """A folder nobody may read (chmod 0, read by an unprivileged user: as root, the
    check runs in a child that drops to nobody) is skipped and its rows carried, by both
    walks alike."""
    with tempfile.TemporaryDirectory(prefix="twofold-fastwalk-") as tmp:
        os.chmod(tmp, 0o755)
        root = Path(tmp)
        src = root / "src"
        for folder in ("a", "locked/inner", "z"):
            (src / folder).mkdir(parents=True)
            (src / folder / "f.txt").write_text(folder)
        target = root / "target"
        target.mkdir()
        backup([str(src)], str(target), "s", BackupOptions(), Clock(), NullProgress())
        (src / "z" / "f.txt").write_text("changed")
        os.chmod(src / "locked", 0)
        try:
            out = subprocess.run(
                [sys.executable, "-c", UNREADABLE, str(src),
                 str(target / "twofold/s/catalog.sqlite")], capture_output=True, text=True,
                check=False, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        finally:
            os.chmod(src / "locked", 0o755)
        assert out.returncode == 0, out.stderr
        python, native = json.loads(out.stdout)
        assert native == python
        assert ["skipped", "src/locked", "Permission denied"] in native
        assert ["carried", "src/locked/inner", ""] in native
        assert ["changed", "src/z/f.txt", ""] in native


TAMPER = {  # a catalog column and how to change it so the row no longer matches
    "kind": "'l'", "size": "size + 1", "mtime_ns": "mtime_ns + 1", "ctime_ns": "ctime_ns - 1",
    "ino": "ino + 1", "mode": "mode + 1", "uid": "uid + 1", "gid": "gid + 1",
    "target": "x'61'", "rdev": "1", "link_to": "path",
}


@needs_native
def test_every_signature_column_is_compared(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows changed in the catalog, one column each (a real file system moves ctime with
    most of them, which would hide a column the walk in C forgot to compare)."""
    sources, db, _ = _backed_up(tmp_path, 7, 200, change=False)
    conn = sqlite3.connect(db)
    with conn:
        rows = conn.execute("SELECT id, path FROM entries WHERE until_run IS NULL AND "
                            "kind IN ('f', 'd') ORDER BY path").fetchall()
        # files with one name and folders: the pairs the walk in C may count as unchanged
        alone = [(i, bytes(p)) for i, p in rows if (tmp_path / os.fsdecode(p)).lstat(
            ).st_nlink == 1 or (tmp_path / os.fsdecode(p)).is_dir()]
        chosen = alone[::3][:len(TAMPER)]
        for (column, change), (i, _) in zip(TAMPER.items(), chosen, strict=True):
            conn.execute(f"UPDATE entries SET {column} = {change} WHERE id = ?", (i,))
    conn.close()
    tampered = {p for _, p in chosen}
    python = _plan(sources, db, [Range()], [], False, monkeypatch)
    native = _plan(sources, db, [Range()], [], True, monkeypatch)
    assert native == python
    # each tampered row was handed over and decided (some as UNCHANGED: compare() ignores
    # a folder's target), none counted as a matching pair
    assert tampered <= {r[1] for r in python if r[0] != "tally"}
