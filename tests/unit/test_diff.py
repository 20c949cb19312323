"""The merge of scan and catalog streams, and the sorted walk it relies on."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from twofold.core.diff import Action, Change, compare, merge
from twofold.core.models import Entry, Kind, Record, Skipped
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Scanner, Source

names = st.sampled_from([b"a", b"a-b", b"a.txt", b"a0", b"b", b"A", b"\xe9", b"a b"])
paths = st.lists(names, min_size=1, max_size=3).map(b"/".join)


def _file(path: bytes, size: int = 1, mtime: int = 1) -> Entry:
    return Entry(path, Kind.FILE, size=size, mtime_ns=mtime)


def _rec(path: bytes, size: int = 1, mtime: int = 1) -> Record:
    return Record(path, Kind.FILE, size=size, mtime_ns=mtime)


@given(st.sets(paths), st.sets(paths))
def test_merge_decides_each_path_once(new: set[bytes], old: set[bytes]) -> None:
    changes = list(merge([_file(p) for p in sorted(new)], [_rec(p) for p in sorted(old)]))
    got = {c.path: c.action for c in changes}
    assert len(got) == len(changes)
    assert {p for p, a in got.items() if a is Action.NEW} == new - old
    assert {p for p, a in got.items() if a is Action.DELETED} == old - new
    assert {p for p, a in got.items() if a is Action.UNCHANGED} == new & old


def test_unreadable_folder_keeps_its_catalog_rows() -> None:
    scan = [_file(b"a"), Skipped(b"d", "Permission denied", is_dir=True), _file(b"d-x")]
    cat = [_rec(b"a"), Record(b"d", Kind.DIR), _rec(b"d-x"), _rec(b"d/in"), _rec(b"d/z/y")]
    got = {c.path: c.action for c in merge(scan, cat)}
    assert got == {b"a": Action.UNCHANGED, b"d": Action.SKIPPED, b"d-x": Action.UNCHANGED,
                   b"d/in": Action.CARRIED, b"d/z/y": Action.CARRIED}


def test_compare_kinds_of_change() -> None:
    old = Record(b"f", Kind.FILE, size=3, mtime_ns=5, ctime_ns=7, ino=9, mode=0o644)
    same = Entry(b"f", Kind.FILE, size=3, mtime_ns=5, ctime_ns=7, ino=9, mode=0o644)
    assert compare(same, old) is Action.UNCHANGED
    assert compare(Entry(b"f", Kind.FILE, size=4, mtime_ns=5, ctime_ns=7, ino=9), old) \
        is Action.CHANGED
    assert compare(Entry(b"f", Kind.FILE, size=3, mtime_ns=5, ctime_ns=8, ino=9,
                         mode=0o600), old) is Action.CHECK
    assert compare(Entry(b"f", Kind.FILE, size=3, mtime_ns=5, ctime_ns=7, ino=9,
                         mode=0o600), old) is Action.META
    assert compare(Entry(b"f", Kind.DIR), old) is Action.CHANGED
    link = Record(b"l", Kind.SYMLINK, target=b"x")
    assert compare(Entry(b"l", Kind.SYMLINK, target=b"y"), link) is Action.CHANGED


def _make_tree(root: Path, rels: set[bytes]) -> None:
    for rel in sorted(rels):
        p = os.path.join(os.fsencode(root), rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if not os.path.isdir(p):
            with open(p, "wb") as f:
                f.write(rel)


@settings(max_examples=40, deadline=None)
@given(st.sets(paths, min_size=1, max_size=25))
def test_scan_yields_byte_order(rels: set[bytes]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "src"
        root.mkdir()
        # a path that is a prefix of another becomes a folder
        files = {r for r in rels if not any(o.startswith(r + b"/") for o in rels)}
        _make_tree(root, files)
        got = [e.path for e in Scanner([Source(b"src", os.fsencode(root))],
                                       Excluder([], use_defaults=False))]
        assert got == sorted(got)
        assert set(got) >= {b"src/" + f for f in files}


def test_changes_carry_entries() -> None:
    c = next(iter(merge([_file(b"x", size=2)], [_rec(b"x")])))
    assert isinstance(c, Change) and c.action is Action.CHANGED and c.entry is not None
