"""Backup, change, back up again: every run restores exactly, content and metadata.

Each round of changes touches one more kind of thing a backup must keep (edits, adds,
deletes, renames of files and folders, modes, symlinks, xattrs, hard links, empty folders,
names that are not UTF-8, sparse files, a path changing type).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from twofold.core.models import Issue

from .conftest import (
    HAS_XATTR,
    FakeClock,
    Snapshot,
    assert_same_tree,
    build_tree,
    catalog_rows,
    fs,
    is_sparse,
    listing,
    make_sparse,
    rewrite_in_place,
    run_backup,
    run_restore,
    run_verify,
    set_dir,
    set_xattr,
    snapshot,
    write_file,
)


def _round_one(src: bytes) -> None:
    """Edit, add, delete, rename a file and a folder, chmod, retarget, xattrs, hard link."""
    j = lambda *parts: os.path.join(src, *parts)  # noqa: E731
    write_file(j(b"docs/f000.bin"), b"edited in round one\n")  # keeps its xattr
    write_file(j(b"docs/new-1.txt"), b"added in round one\n")
    os.unlink(j(b"music/albums/one/f003.bin"))
    os.rename(j(b"docs/f005.bin"), j(b"docs/letters/moved-f005.bin"))
    os.rename(j(b"music/albums"), j(b"music/collections"))
    os.chmod(j(b"docs/f010.bin"), 0o600)
    os.chmod(j(b"data"), 0o700)
    os.unlink(j(b"pics/link-to-f000"))
    os.symlink(b"../docs/new-1.txt", j(b"pics/link-to-f000"))
    if HAS_XATTR:
        set_xattr(j(b"docs/f000.bin"), "user.colour", b"green")
        set_xattr(j(b"pics/f002.bin"), "user.added", b"\x00\xffbinary")
    os.link(j(b"data/hard-a"), j(b"data/hard-c"))
    os.makedirs(j(b"new-empty"))
    write_file(j(b"pics/caf\xe9-\xff.jpg"), b"not utf-8 at all\n")
    make_sparse(j(b"data/sparse2.img"), 6 << 20, {1 << 20: b"x" * 10_000})
    with open(j(b"data/sparse.img"), "r+b") as f:  # data written into a hole
        f.seek(5 << 20)
        f.write(b"filled")


def _round_two(src: bytes) -> None:
    """Same size and mtime edit, hard-link head deleted, xattr removed, types change."""
    j = lambda *parts: os.path.join(src, *parts)  # noqa: E731
    big = j(b"data/big.bin")
    st = os.stat(big)
    with open(big, "r+b") as f:  # same size, mtime put back: only ctime tells
        f.seek(1 << 20)
        old = f.read(8)
        f.seek(1 << 20)
        f.write(bytes(b ^ 0xFF for b in old))
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.unlink(j(b"data/hard-a"))  # hard-b becomes the first of its group
    if HAS_XATTR:
        os.removexattr(j(b"docs/f000.bin"), "user.colour")
    os.rename(j(b"docs/letters"), j(b"letters-2024"))
    os.unlink(j(b"pics/dangling"))
    os.symlink(b"f002.bin", j(b"pics/dangling"))
    os.rmdir(j(b"empty"))
    write_file(j(b"empty"), b"a folder became a file\n")
    os.unlink(j(b"data/f004.bin"))
    write_file(j(b"data/f004.bin/inside.txt"), b"a file became a folder\n")
    os.chmod(j(b"pics/caf\xe9-\xff.jpg"), 0o640)
    write_file(j(b"caf\xe9/\xe9t\xe9.txt"), b"in a folder whose name is not utf-8\n")
    rewrite_in_place(j(b"docs/f010.bin"), b"edited in place, new size\n")


def _round_three(src: bytes) -> None:
    """Deletions of a folder and a sparse file, file<->symlink, hard link edited in place."""
    j = lambda *parts: os.path.join(src, *parts)  # noqa: E731
    os.unlink(j(b"data/sparse.img"))
    make_sparse(j(b"data/sparse3.img"), 4 << 20, {(4 << 20) - 4096: b"tail" * 1024})
    os.unlink(j(b"data/f009.bin"))
    os.symlink(b"big.bin", j(b"data/f009.bin"))
    os.unlink(j(b"pics/dangling"))
    write_file(j(b"pics/dangling"), b"a symlink became a file\n")
    os.link(j(b"pics/f002.bin"), j(b"docs/hl-to-pics-f002"))
    shutil.rmtree(j(b"music"))
    os.chmod(j(b"data"), 0o755)
    if HAS_XATTR:
        set_xattr(j(b"letters-2024"), "user.tag", b"renamed folder, new tag")
    rewrite_in_place(j(b"data/hard-b"), b"all three links see this\n")
    os.rename(j(b"docs/new-1.txt"), j(b"new-empty/new-1.txt"))
    write_file(j(b"new-empty/new-1.txt"), b"moved and edited\n")


ROUNDS: list[Callable[[bytes], None]] = [_round_one, _round_two, _round_three]


@dataclass
class Cycle:
    """Four runs of one source: what the source and current/ looked like after each."""

    src: Path
    target: Path
    tmp: Path
    source: dict[int, Snapshot] = field(default_factory=dict)
    current: dict[int, Snapshot] = field(default_factory=dict)
    issues: dict[int, list[Issue]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def cycle(tmp_path_factory: pytest.TempPathFactory) -> Cycle:
    tmp = tmp_path_factory.mktemp("cycle")
    src = build_tree(tmp / "src", seed=7)
    target = tmp / "target"
    target.mkdir()
    clock = FakeClock()
    out = Cycle(src, target, tmp)
    for change in [None, *ROUNDS]:
        if change is not None:
            change(fs(src))
        result = run_backup(src, target, clock)
        assert result.run_id is not None and result.run_id not in out.source
        out.issues[result.run_id] = result.stats.issues
        out.source[result.run_id] = snapshot(src)
        out.current[result.run_id] = snapshot(set_dir(target) / "current" / src.name)
    assert list(out.source) == [1, 2, 3, 4]
    return out


@pytest.mark.parametrize("run_id", [1, 2, 3, 4])
def test_run_reports_no_issue(cycle: Cycle, run_id: int) -> None:
    assert not cycle.issues[run_id]


@pytest.mark.parametrize("run_id", [1, 2, 3, 4])
def test_current_mirrors_source_after_each_run(cycle: Cycle, run_id: int) -> None:
    assert_same_tree(cycle.current[run_id], cycle.source[run_id],
                     f"current/ after run {run_id}")


@pytest.mark.parametrize("run_id", [1, 2, 3, 4])
def test_restore_as_of_each_run(cycle: Cycle, run_id: int) -> None:
    dest = cycle.tmp / f"restore-{run_id}"
    res = run_restore(cycle.target, dest, as_of=str(run_id))
    assert res.run_id == run_id
    assert not res.issues, res.issues
    assert_same_tree(snapshot(dest / cycle.src.name), cycle.source[run_id],
                     f"restore as of run {run_id}")


def test_restore_latest_equals_source(cycle: Cycle) -> None:
    dest = cycle.tmp / "restore-latest"
    res = run_restore(cycle.target, dest)
    assert res.run_id == 4
    assert not res.issues, res.issues
    assert_same_tree(snapshot(dest / cycle.src.name), snapshot(cycle.src),
                     "restore of the latest run")


def test_sparse_files_keep_their_holes(cycle: Cycle) -> None:
    dest = cycle.tmp / "restore-sparse"
    run_restore(cycle.target, dest, paths=["src/data"])
    for sparse in (b"data/sparse2.img", b"data/sparse3.img"):
        if not is_sparse(os.path.join(fs(cycle.src), sparse)):
            pytest.skip("the test folder's file system does not keep holes")
        assert is_sparse(os.path.join(fs(dest / cycle.src.name), sparse)), \
            f"{sparse!r} lost its holes on restore"
        assert is_sparse(os.path.join(fs(set_dir(cycle.target) / "current" / cycle.src.name),
                                      sparse)), f"{sparse!r} lost its holes in current/"


def test_cycle_covers_xattrs_and_hard_links(cycle: Cycle) -> None:
    """The snapshots compared above hold what they are meant to test."""
    for run_id, snap in cycle.source.items():
        assert any(n.links for n in snap.values()), f"no hard links in run {run_id}"
        assert any(n.type == "symlink" for n in snap.values())
        assert any(b"\xe9" in p for p in snap), f"no non-UTF-8 name in run {run_id}"
    if not HAS_XATTR:
        pytest.skip("the test folder's file system keeps no user xattrs: not covered")
    for run_id, snap in cycle.source.items():
        assert any(n.xattrs for n in snap.values()), f"no xattrs in run {run_id}"


def test_verify_after_cycle_is_clean(cycle: Cycle) -> None:
    res = run_verify(cycle.target)
    assert res.checked > 50
    assert not res.problems, res.problems


def test_noop_run_writes_nothing(tmp_path: Path, clock: FakeClock) -> None:
    src = build_tree(tmp_path / "src", seed=11)
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    _round_one(fs(src))  # hard links, xattrs, sparse files, odd names: all must settle
    run_backup(src, target, clock)

    sd = set_dir(target)
    before = {name: listing(sd / name) for name in ("current", "versions")}
    runs_before = catalog_rows(target, "SELECT id FROM runs")
    rows_before = catalog_rows(target, "SELECT * FROM entries ORDER BY id")

    result = run_backup(src, target, clock)

    stats = result.stats
    assert (stats.new, stats.changed, stats.metadata, stats.deleted, stats.bytes_copied) == \
        (0, 0, 0, 0, 0), stats.as_dict()
    for name, was in before.items():
        now = listing(sd / name)
        changed = sorted(p for p in set(was) | set(now) if was.get(p) != now.get(p))
        assert not changed, f"a no-op run wrote to {name}/: {changed[:20]}"
    runs_after = catalog_rows(target, "SELECT id, state FROM runs")
    assert len(runs_after) == len(runs_before) + 1
    assert runs_after[-1] == (result.run_id, "complete")
    assert catalog_rows(target, "SELECT * FROM entries ORDER BY id") == rows_before
    assert not catalog_rows(target, "SELECT * FROM pending")


def test_rename_is_applied_as_a_rename(tmp_path: Path, clock: FakeClock) -> None:
    """DESIGN.md: "Moves and renames are applied as renames on the target, not copies"."""
    src = build_tree(tmp_path / "src", seed=3)
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    os.rename(src / "data" / "big.bin", src / "data" / "big-renamed.bin")
    os.rename(src / "music", src / "sounds")

    result = run_backup(src, target, clock)

    assert result.stats.bytes_copied == 0, (
        f"renaming a 2 MiB file and a folder copied {result.stats.bytes_copied} bytes")
    assert_same_tree(snapshot(set_dir(target) / "current" / src.name), snapshot(src),
                     "current/ after a run of renames")
