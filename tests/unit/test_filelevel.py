"""File-level imaging against the previous image: entries as they were are taken over with
their stored lines (not built or encoded again), and the second image describes the tree
exactly as an image made from scratch does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from twofold.blobs.objects import LocalObjects
from twofold.chunks.chunkstore import ChunkStore
from twofold.core.progress import NullProgress
from twofold.image import filelevel
from twofold.image.filelevel import image_files, previous
from twofold.image.filerecords import _ENCODER, get_bytes, load_lines

PARAMS = {"type": "ext4"}


def _tree(top: Path) -> None:
    (top / "docs").mkdir()
    (top / "docs" / "sub").mkdir()
    for n in range(40):
        (top / "docs" / f"note{n}.txt").write_text(f"note {n}\n" * (n + 1))
    (top / "big.bin").write_bytes(os.urandom(3 << 20))
    (top / "empty").write_bytes(b"")
    (top / "data").write_bytes(b"d" * 5000)
    os.link(top / "data", top / "data.link")
    os.symlink("docs/note1.txt", top / "to-note")
    os.mkfifo(top / "pipe")
    (top / os.fsdecode(b"caf\xe9")).write_bytes(b"not UTF-8 named")


def _image(point: Path, store: ChunkStore, before: Any = None) -> dict[str, Any]:
    got = image_files(str(point), PARAMS, store, 3, NullProgress(), 4, set(), before)
    store.commit_index()  # packs written, as create leaves them
    return got.doc


def _described(store: ChunkStore, doc: dict[str, Any]) -> dict[bytes, tuple[Any, ...]]:
    """Each entry's record without its chunk references, and its data as stored."""
    out = {}
    for rec, line in load_lines(store, doc, "test"):
        assert line == _ENCODER.encode(rec).encode()  # a line is its record
        data = b"".join(store.load(bytes.fromhex(h))[o:o + n] if h else bytes(n)
                        for h, o, n in rec.get("d", []))
        out[get_bytes(rec, "p") or b""] = (sorted((k, str(v)) for k, v in rec.items()
                                                  if k != "d"), data)
    return out


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The paths whose records are built anew (not taken over from the previous image)."""
    paths: list[bytes] = []
    real = filelevel._record

    def counting(rel: bytes, *args: Any) -> dict[str, Any]:
        paths.append(rel)
        return real(rel, *args)

    monkeypatch.setattr(filelevel, "_record", counting)
    return paths


def test_a_second_image_takes_unchanged_entries_over_and_equals_one_from_scratch(
        tmp_path: Path, built: list[bytes]) -> None:
    top = tmp_path / "fs"
    top.mkdir()
    _tree(top)
    store = ChunkStore(LocalObjects(tmp_path / "store"))
    read = top / "docs" / "note6.txt"
    os.utime(read, ns=(1_000_000_000, read.stat().st_mtime_ns))  # atime before mtime
    first = _image(top, store)
    assert len(built) == 50  # every entry, the first time
    built.clear()
    before = read.stat()
    read.read_bytes()  # moves the atime (relatime: it was older than the mtime)
    if read.stat().st_atime_ns == before.st_atime_ns:
        pytest.skip("this file system does not move the atime on a read")
    assert read.stat().st_ctime_ns == before.st_ctime_ns
    (top / "docs" / "note3.txt").write_text("changed\n")  # data
    os.chmod(top / "docs" / "note4.txt", 0o600)  # mode only
    os.chmod(top / "docs" / "sub", 0o700)  # a folder's mode (its mtime stays)
    (top / "docs" / "new.txt").write_text("new\n")  # a new entry (and its folder changed)
    os.remove(top / "docs" / "note5.txt")
    os.remove(top / "to-note")
    os.symlink("docs/note2.txt", top / "to-note")  # a symlink pointing elsewhere
    second = _image(top, store, previous(store, first, "test"))
    # built anew: what changed, the folders they are in, and what the fast path leaves out
    # (hard links, the FIFO); everything else was taken over from the first image, a file
    # only read since with its line's atime replaced
    assert sorted(built) == sorted([b"", b"docs", b"docs/note3.txt", b"docs/note4.txt",
                                    b"docs/new.txt", b"docs/sub", b"to-note", b"data", b"data.link",
                                    b"pipe"])
    fresh = ChunkStore(LocalObjects(tmp_path / "fresh"))
    assert _described(store, second) == _described(fresh, _image(top, fresh))
    assert b"docs/note5.txt" not in _described(store, second)


def test_a_file_whose_chunk_is_gone_is_read_again(tmp_path: Path, built: list[bytes]
                                                  ) -> None:
    top = tmp_path / "fs"
    top.mkdir()
    (top / "a").write_bytes(b"a" * 100)
    store = ChunkStore(LocalObjects(tmp_path / "store"))
    first = _image(top, store)
    before = previous(store, first, "test")
    assert before is not None
    rec = before.records[b"a"][0]
    before.held[rec["d"][0][0]] = False  # as if deleted from the store meanwhile
    built.clear()
    second = _image(top, store, before)
    assert built == [b"a"]  # read again; the root folder was taken over
    assert _described(store, second)[b"a"][1] == b"a" * 100
