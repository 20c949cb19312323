"""The walk of file-level images: a folder scanned in C gives exactly what the Python scan
gives (names in order, every lstat field, xattrs, symlink targets), and files read in
batches come back as read one by one."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from twofold.blobs.objects import LocalObjects
from twofold.chunks.chunkstore import ChunkStore
from twofold.fsinfo import fastwalk
from twofold.image.filewalk import (
    Entry,
    Sink,
    Tally,
    Walk,
    read_files,
    read_files_python,
    scan,
    scan_python,
)

FIELDS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
          "st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns",
          "st_blksize", "st_blocks", "st_rdev")


def _plain(entries: list[Entry]) -> list[tuple[Any, ...]]:
    """Entries with every stat field spelt out (stat_result's == compares 10 of them), but
    a symlink's atime (reading its target moves it; records leave it out)."""
    return [(name, path, tuple(getattr(st, f) for f in FIELDS
                               if not (target is not None and "atime" in f)), attrs, target)
            for name, path, st, attrs, target in entries]


def _tree(top: Path) -> None:
    (top / "sub").mkdir(parents=True)
    for name in ("b", "a", "a.b", "a-b", "a0", "Été", "z"):
        (top / name).write_bytes(name.encode() * 3)
    (top / os.fsdecode(b"caf\xe9")).write_bytes(b"not utf-8")
    os.symlink("a", top / "link")
    os.symlink("nowhere", top / "dangling")
    os.symlink("x" * 300, top / "long")
    os.mkfifo(top / "fifo")
    os.link(top / "a", top / "sub" / "hard")
    try:
        os.setxattr(top / "a", "user.twofold", b"\x00\xffvalue")
        os.setxattr(top / "sub", "user.empty", b"")
        os.setxattr(top / "sub", "user.other", b"x" * 300)
    except OSError:
        pass  # no user xattrs on this file system: the rest is still compared


@pytest.mark.skipif(fastwalk.scan_folder() is None, reason="the walk in C is not built here")
def test_the_scan_in_c_gives_what_the_python_scan_gives(tmp_path: Path) -> None:
    _tree(tmp_path / "t")
    folders = [os.fsencode(tmp_path / "t"), os.fsencode(tmp_path / "t") + b"/",
               os.fsencode(tmp_path / "t" / "sub")]
    for folder in folders:
        native, python = scan(folder), scan_python(folder)
        assert native
        assert _plain(native) == _plain(python)
        assert [e[0] for e in native] == sorted(e[0] for e in native)
    assert scan(os.fsencode(tmp_path / "gone")) == [] == scan_python(
        os.fsencode(tmp_path / "gone"))
    if os.getxattr(tmp_path / "t" / "a", "user.twofold", follow_symlinks=False):
        a = next(e for e in scan(folders[0]) if e[0] == b"a")
        assert a[3] == {"user.twofold": b"\x00\xffvalue".hex()}
    targets = {e[0]: e[4] for e in scan(folders[0])}
    assert targets[b"link"] == b"a" and targets[b"dangling"] == b"nowhere"
    assert targets[b"a"] is None and targets[b"sub"] is None
    with pytest.raises(NotADirectoryError):
        scan(os.fsencode(tmp_path / "t" / "a"))


def test_a_batch_reads_each_file_as_one_read_would(tmp_path: Path) -> None:
    store = ChunkStore(LocalObjects(tmp_path / "store"))
    sink = Sink(store, 3, Tally())
    (tmp_path / "small").write_bytes(b"s" * 100)
    (tmp_path / "large").write_bytes(os.urandom(store.chunk_size + 5))
    (tmp_path / "empty").write_bytes(b"")
    os.mkfifo(tmp_path / "fifo")
    paths = [os.fsencode(tmp_path / n) for n in ("small", "gone", "large", "empty")]
    got = read_files(paths, store.chunk_size // 4, store.chunk_size, sink)
    small, gone, large, empty = got
    assert small is not None and small.small == b"s" * 100 and not small.unstable
    assert gone is None
    assert large is not None and large.small is None and \
        [r[2] for r in large.refs] == [store.chunk_size, 5]
    assert empty is not None and empty.small == b""
    assert stat.S_ISREG(small.st.st_mode)


@pytest.mark.skipif(fastwalk.read_small() is None, reason="the walk in C is not built here")
def test_a_batch_read_in_c_gives_what_python_reads(tmp_path: Path) -> None:
    store = ChunkStore(LocalObjects(tmp_path / "store"))
    small = store.chunk_size // 4
    names = {"a": b"a" * 10, "b": os.urandom(small - 1), "c": b"", "d": os.urandom(small)}
    for name, data in names.items():
        (tmp_path / name).write_bytes(data)
    os.symlink("a", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")  # a FIFO in a file's place: not a file, and not waited on
    paths = [os.fsencode(tmp_path / n) for n in (*names, "gone", "fifo")]
    native = read_files(paths, small, store.chunk_size, Sink(store, 3, Tally()))
    python = read_files_python(paths, small, store.chunk_size, Sink(store, 3, Tally()))
    assert [r and (r.small, r.refs, r.unstable, tuple(getattr(r.st, f) for f in FIELDS))
            for r in native] == \
        [r and (r.small, r.refs, r.unstable, tuple(getattr(r.st, f) for f in FIELDS))
         for r in python]
    assert [r.small if r else None for r in native] == [*names.values()][:3] + [None] * 3
    with pytest.raises(OSError):  # a symlink in place of a file: refused, as in Python
        read_files([os.fsencode(tmp_path / "link")], small, store.chunk_size,
                   Sink(store, 3, Tally()))


def test_the_walk_runs_ahead_in_order_and_stops_when_closed(tmp_path: Path) -> None:
    for n in range(30):
        (tmp_path / f"d{n:02}" / "sub").mkdir(parents=True)
        (tmp_path / f"d{n:02}" / "f").write_text("x")
    with Walk(os.fsencode(tmp_path), set()) as walk:
        got = [rel for rel, *_ in walk]
    want = [b"", *(b"d%02d" % n for n in range(30))] + \
        [p for n in range(30) for p in (b"d%02d/f" % n, b"d%02d/sub" % n)]
    assert got == want  # a folder's entries, names sorted, then its folders depth first
    walk = Walk(os.fsencode(tmp_path), set())
    Walk.AHEAD, before = 1, Walk.AHEAD
    try:
        first = next(iter(walk))
    finally:
        Walk.AHEAD = before
        walk.close()  # read no further: its threads end
    assert first[0] == b"" and not walk.thread.is_alive()


def test_an_error_of_the_walk_reaches_its_reader(tmp_path: Path) -> None:
    with Walk(os.fsencode(tmp_path / "gone"), set()) as walk, \
            pytest.raises(FileNotFoundError):
        list(walk)
