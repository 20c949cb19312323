"""Planning in several processes, each over one range of paths, gives exactly what one
merge of the whole tree gives: the same changes, in the same order, the same counts."""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from twofold.backup.engine import BackupOptions, backup
from twofold.backup.planproc import (
    LIST_MAX,
    MAX_PARTS,
    Planned,
    Range,
    _Links,
    folder_sample,
    plan_range,
    ranges,
)
from twofold.core.diff import Action, Change, Tally, merge
from twofold.core.errors import UsageError
from twofold.core.progress import NullProgress
from twofold.fsinfo import fastwalk
from twofold.fsinfo.children import can_fork
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Scanner, Source
from twofold.sets.catalog import Catalog

T0 = 1_767_225_600 * 10**9
needs_fork = pytest.mark.skipif(not can_fork(), reason="no fork on this platform")


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def now_ns(self) -> int:
        self.t += 60 * 10**9
        return self.t


def _f(i: int) -> str:
    return f"d{i % 7}/e{i % 11:02d}/f{i:05d}.txt"


def _tree(root: Path) -> None:
    """About 2,500 entries in nested folders, hard links far apart, odd names."""
    for i in range(2400):
        p = root / _f(i)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * (i % 50))
    os.link(root / _f(0), root / "d6/zz-late-name.txt")  # across the cuts
    os.link(root / _f(45), root / "d3/e01/near.txt")
    os.symlink("e00", root / "d1/link")
    (root / "d2/junk.tmp").write_text("left out")
    (root / "d4" / os.fsdecode(b"caf\xe9")).mkdir()
    (root / "d5/empty").mkdir()


def _change(root: Path) -> None:
    (root / _f(10)).write_bytes(b"changed, longer")
    (root / _f(100)).unlink()
    (root / "d5/new.txt").write_text("new")
    os.chmod(root / _f(6), 0o600)
    os.link(root / "d5/new.txt", root / "d0/new-link.txt")  # first name after the second
    os.unlink(root / "d3/e01/near.txt")  # the other name is now alone


@pytest.fixture()
def setup(tmp_path: Path) -> Iterator[tuple[list[Source], Catalog]]:
    src = tmp_path / "src"
    _tree(src)
    target = tmp_path / "target"
    target.mkdir()
    backup([str(src)], str(target), "s", BackupOptions(excludes=["*.tmp"]), Clock(),
           NullProgress())
    _change(src)
    catalog = Catalog(str(target / "twofold/s/catalog.sqlite"))
    yield [Source(b"src", os.fsencode(src))], catalog
    catalog.close()


def _summary(items: Iterable[Change | Tally]) -> tuple[list[tuple[Action, bytes]], tuple[
        int, int, int, int]]:
    changes: list[tuple[Action, bytes]] = []
    seen = same = files = nbytes = 0
    for item in items:
        if isinstance(item, Tally):
            seen += item.seen
            same += item.same
            files += item.files
            nbytes += item.nbytes
        elif item.action is Action.UNCHANGED:
            same += 1
            assert item.entry is not None
            files += 1
            nbytes += item.entry.size
        else:
            changes.append((item.action, item.path))
    return changes, (seen, same, files, nbytes)


def _whole(sources: list[Source], catalog: Catalog) -> tuple[list[tuple[Action, bytes]],
                                                              tuple[int, int, int, int]]:
    """The reference: one in-process scan of everything, merged with all the rows."""
    changes = list(merge(Scanner(sources, Excluder(["*.tmp"])), catalog.current()))
    summary = _summary(c for c in changes if c.action is not Action.UNCHANGED)
    unchanged = [c for c in changes if c.action is Action.UNCHANGED]
    files = [c for c in unchanged if c.entry is not None and c.entry.kind == "f"]
    return summary[0], (len(changes), len(unchanged), len(files),
                        sum(c.entry.size for c in files if c.entry is not None))


def plan_changes(sources: list[Source], patterns: list[str], defaults: bool,
                 catalog: Catalog, parts: int | None) -> Iterator[Change | Tally]:
    """One pass over a Planned, as the engine makes it, closed at the end."""
    planned = Planned(sources, patterns, defaults, catalog, parts)
    try:
        yield from planned
    finally:
        planned.close()


def _ranged(sources: list[Source], catalog: Catalog, parts: list[Range]) -> list[
        Change | Tally]:
    """What the workers and the parent do, in this process: each range in turn, files with
    several names decided in path order."""
    links = _Links()
    items: list[Change | Tally] = []
    for part in parts:
        for item in plan_range(sources, Excluder(["*.tmp"]), catalog.file, part, False):
            held = isinstance(item, Change) and item.action is Action.HELD
            items.append(links.decide(item) if held else item)  # type: ignore[arg-type]
    return items


def test_any_cut_gives_the_changes_of_one_merge(setup: tuple[list[Source], Catalog]) -> None:
    sources, catalog = setup
    want = _whole(sources, catalog)
    assert (Action.CHANGED, os.fsencode("src/" + _f(10))) in want[0]
    assert (Action.DELETED, os.fsencode("src/" + _f(100))) in want[0]
    assert (Action.NEW, b"src/d0/new-link.txt") in want[0]
    paths = [bytes(r.path) for r in catalog.current()]
    for cut_at in (1, 2, 3, len(paths) // 3, len(paths) // 2, len(paths) - 1):
        cuts = [paths[cut_at], paths[min(cut_at + 97, len(paths) - 1)]]
        bounds: list[bytes | None] = [b"", *sorted(set(cuts)), None]
        parts = [Range(bounds[i] or b"", bounds[i + 1]) for i in range(len(bounds) - 1)]
        assert _summary(_ranged(sources, catalog, parts)) == want, f"cut at {cuts}"


@needs_fork
@pytest.mark.parametrize("parts", [1, 2, 3, 4])
def test_worker_processes_give_the_changes_of_one_merge(
        setup: tuple[list[Source], Catalog], parts: int) -> None:
    sources, catalog = setup
    assert len(ranges(catalog, parts)) == parts
    got = _summary(plan_changes(sources, ["*.tmp"], True, catalog, parts))
    assert got == _whole(sources, catalog)
    assert not multiprocessing.active_children()


@needs_fork
def test_a_first_run_is_cut_where_the_sources_folders_are(tmp_path: Path) -> None:
    """An empty catalog gives no cuts: a tree of more than LIST_MAX folders is cut at a
    sample of its own folders, and the ranges plan what one merge does."""
    src = tmp_path / "src"
    _tree(src)  # 7 folders of 11 folders each, and a few more
    sources = [Source(b"src", os.fsencode(src))]
    sample = folder_sample(sources)
    assert sample == sorted(sample) and len(sample) > LIST_MAX
    assert {b"src/d0", b"src/d6/e10", os.fsencode("src/d4/caf\udce9")} <= set(sample)
    catalog = Catalog(str(tmp_path / "empty.sqlite"), create=True, set_name="s")
    try:
        parts = ranges(catalog, None, sources)
        assert len(parts) == min(2 * (os.cpu_count() or 1), MAX_PARTS) > 1
        assert parts[0].lo == b"" and parts[-1].hi is None
        assert all(a.hi == b.lo for a, b in itertools.pairwise(parts))
        got = _summary(plan_changes(sources, ["*.tmp"], True, catalog, None))
        assert got == _whole(sources, catalog)
        late = [c for c in plan_changes(sources, ["*.tmp"], True, catalog, None)
                if isinstance(c, Change) and c.path == b"src/d6/zz-late-name.txt"]
        assert late[0].entry is not None  # its first name lies in another range
        assert late[0].entry.link_to == os.fsencode("src/" + _f(0))
    finally:
        catalog.close()
    assert not multiprocessing.active_children()


def test_a_later_run_of_a_small_set_is_one_range(
        setup: tuple[list[Source], Catalog]) -> None:
    """A catalog of fewer than 2 * MIN_ROWS rows plans in one process, however many
    folders the tree has (forking more costs a small set's no-op more than it saves)."""
    sources, catalog = setup
    assert folder_sample(sources)  # big enough to cut on a first run
    assert ranges(catalog, None, sources) == [Range()]


def test_a_small_first_run_is_one_range(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(LIST_MAX - 2):
        (src / f"f{i}").mkdir(parents=True)
    sources = [Source(b"src", os.fsencode(src))]
    assert folder_sample(sources) == []  # all listed: small
    catalog = Catalog(str(tmp_path / "empty.sqlite"), create=True, set_name="s")
    try:
        assert ranges(catalog, None, sources) == [Range()]
    finally:
        catalog.close()


def test_sample_of_open_rows(setup: tuple[list[Source], Catalog]) -> None:
    """ranges() cuts at a sample of the open rows: every row of a small catalog, sorted;
    of a larger one, an estimate near the count and paths of open rows only."""
    _sources, catalog = setup
    every = sorted(bytes(r.path) for r in catalog.current())
    assert catalog.sample_open(10 * len(every)) == (len(every), every)
    estimate, some = catalog.sample_open(16)
    assert set(some) <= set(every) and some == sorted(some)
    assert abs(estimate - catalog.count_open()) <= len(every) // 3


@needs_fork
def test_a_replay_gives_the_changes_of_the_first_pass(
        setup: tuple[list[Source], Catalog]) -> None:
    sources, catalog = setup
    planned = Planned(sources, ["*.tmp"], True, catalog, 3)
    try:
        first = [(c.action, c.path, c.entry.link_to if c.entry else None)
                 for c in planned if isinstance(c, Change)]
        again = [(c.action, c.path, c.entry.link_to if c.entry else None)
                 for c in planned.replay()]
    finally:
        planned.close()
    assert again == first
    assert (Action.NEW, b"src/d5/new.txt", b"src/d0/new-link.txt") in first
    assert not os.path.exists(planned._tmp.name)


def test_a_ranged_scan_yields_the_range_of_the_whole_scan(tmp_path: Path) -> None:
    _tree(tmp_path / "src")
    sources = [Source(b"src", os.fsencode(tmp_path / "src"))]
    whole = list(Scanner(sources, Excluder([])))
    paths = [e.path for e in whole]
    assert paths == sorted(paths)
    for lo, hi in [(paths[5], paths[900]), (b"src/d3", b"src/d3/"), (b"src/d3/", None),
                   (b"", os.fsencode("src/" + _f(100))), (b"src/d4/caf", b"src/d4/cafe")]:
        part = list(Scanner(sources, Excluder([]), lo, hi))
        assert [e.path for e in part] == [p for p in paths if lo <= p and (
            hi is None or p < hi)], (lo, hi)


def test_an_unreadable_folder_across_a_cut_carries_its_rows(
        setup: tuple[list[Source], Catalog], monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal is injected into the Python walk's calls, so this plans in Python;
    test_fastwalk.py makes a real unreadable folder for the walk in C."""
    sources, catalog = setup
    monkeypatch.setenv(fastwalk.OFF, "1")
    locked = os.path.join(sources[0].path, b"d2")
    real, real_open = os.scandir, os.open

    def scandir(path: bytes) -> object:
        if path == locked:
            raise PermissionError(13, "Permission denied")
        return real(path)

    def open_dir(path: bytes, flags: int, *args: Any, **kwargs: Any) -> int:
        if path == locked or (path == b"d2" and kwargs.get("dir_fd") is not None):
            raise PermissionError(13, "Permission denied")  # the walk opens by descriptor
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "open", open_dir)
    want = _whole(sources, catalog)
    assert (Action.SKIPPED, b"src/d2") in want[0]
    inside = [p for p in (bytes(r.path) for r in catalog.current()) if
              p.startswith(b"src/d2/")]
    cut = inside[len(inside) // 2]
    got = _summary(_ranged(sources, catalog, [Range(b"", cut), Range(cut, None)]))
    assert got == want
    assert got[0].count((Action.SKIPPED, b"src/d2")) == 1
    assert sum(1 for a, _ in got[0] if a is Action.CARRIED) == len(inside)


def test_a_bad_pattern_is_a_usage_error(setup: tuple[list[Source], Catalog]) -> None:
    sources, catalog = setup
    with pytest.raises(UsageError):
        list(plan_changes(sources, ["\\"], True, catalog, 2))


@needs_fork
def test_a_bad_ignore_file_in_a_worker_reaches_the_parent(
        setup: tuple[list[Source], Catalog]) -> None:
    sources, catalog = setup
    (Path(os.fsdecode(sources[0].path)) / ".twofoldignore").write_text("\\\n")
    with pytest.raises(UsageError, match="twofoldignore"):
        list(plan_changes(sources, [], True, catalog, 2))
    assert not multiprocessing.active_children()


@needs_fork
def test_stopping_early_ends_the_workers(setup: tuple[list[Source], Catalog]) -> None:
    sources, catalog = setup
    it = plan_changes(sources, [], True, catalog, 2)
    next(it)
    it.close()  # the generator's cleanup terminates and joins the workers
    assert not multiprocessing.active_children()
