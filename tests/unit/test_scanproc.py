"""The scan in a child process gives exactly what the in-process scan gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from twofold.core.errors import UsageError
from twofold.core.models import Entry
from twofold.fsinfo import scanproc
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Scanner, Source


def _tree(root: Path) -> list[Source]:
    for i in range(5000):  # several batches
        p = root / "docs" / f"d{i % 37:02d}" / f"f{i:05d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * (i % 50))
    os.link(root / "docs/d00/f00000.txt", root / "docs/zz-hard.txt")
    os.symlink("d00", root / "docs/link")
    (root / "docs/junk.tmp").write_text("left out")
    (root / "docs" / "caf\xe9".encode("latin-1").decode("utf-8", "surrogateescape")).mkdir()
    return [Source(b"docs", os.fsencode(root / "docs"))]


@pytest.mark.skipif(not scanproc.can_fork(), reason="no fork on this platform")
def test_child_scan_equals_in_process_scan(tmp_path: Path) -> None:
    sources = _tree(tmp_path)
    here = list(Scanner(sources, Excluder(["*.tmp"])))
    there = list(scanproc.scan(sources, ["*.tmp"], True))
    assert there == here
    assert len(here) > 5000
    hard = [e for e in there if isinstance(e, Entry) and e.link_to is not None]
    assert [e.path for e in hard] == [b"docs/zz-hard.txt"]
    assert not any(e.path.endswith(b".tmp") for e in there)


def test_a_bad_pattern_is_a_usage_error(tmp_path: Path) -> None:
    sources = _tree(tmp_path)
    with pytest.raises(UsageError):
        list(scanproc.scan(sources, ["\\"], True))


@pytest.mark.skipif(not scanproc.can_fork(), reason="no fork on this platform")
def test_a_bad_ignore_file_in_the_child_reaches_the_parent(tmp_path: Path) -> None:
    sources = _tree(tmp_path)
    (tmp_path / "docs/.twofoldignore").write_text("\\\n")
    with pytest.raises(UsageError, match="twofoldignore"):
        list(scanproc.scan(sources, [], True))


@pytest.mark.skipif(not scanproc.can_fork(), reason="no fork on this platform")
def test_stopping_early_ends_the_child(tmp_path: Path) -> None:
    sources = _tree(tmp_path)
    it = scanproc.scan(sources, [], True)
    assert next(it).path == b"docs"
    it.close()  # the generator's cleanup terminates and joins the child
    import multiprocessing

    assert not multiprocessing.active_children()
