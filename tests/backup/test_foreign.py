"""Backups to the drives people own: exFAT, NTFS and FAT32, made with mkfs and mounted
through their FUSE drivers (root only; skipped with the reason elsewhere).

Each drive gets a tree with what it cannot hold: symlinks, names it forbids, case twins,
xattrs, odd modes, owners, hard links and a file over 4 GiB. The restore must equal the
source, and a second run must copy nothing and write nothing but the catalog (not even
the set's folder, which a lock file or journal made and removed would change).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from twofold.backup.inspect import history
from twofold.core.names import TargetProfile
from twofold.sets.catalog import Catalog

from ..drives import DRIVES, foreign_drive
from .conftest import (
    HAS_XATTR,
    IS_ROOT,
    SET,
    FakeClock,
    assert_same_tree,
    build_tree,
    catalog_rows,
    fs,
    issue_paths,
    listing,
    make_sparse,
    run_backup,
    run_restore,
    run_verify,
    set_dir,
    settle_dirs,
    snapshot,
    write_file,
)

HUGE = b"data/huge.img"
HUGE_SIZE = (4 << 30) + (1 << 20)  # just over what FAT32 holds
AWKWARD = [b"docs/a:b?.txt", b'docs/say "hi" <now>|', b"docs/back\\slash", b"docs/CON",
           b"docs/con.tar.gz", b"docs/ends in dot.", b"docs/ends in space ",
           b"docs/tab\there", b"docs/caf\xc3\xa9 \xe2\x82\xac.txt", b"docs/latin\xe9",
           "docs/{}.txt".format("é" * 120).encode()]
TWINS = [b"docs/Report.txt", b"docs/report.txt", b"docs/REPORT.TXT", b"Photos/a.jpg",
         b"photos/a.jpg", b"photos/B.jpg"]


def foreign_tree(root: Path, huge: bool = True) -> Path:
    """The usual test tree plus everything a Windows filesystem cannot hold as it is."""
    build_tree(root, files=30)
    base = fs(root)
    for i, rel in enumerate(AWKWARD + TWINS):
        write_file(os.path.join(base, rel), b"content of %d: " % i + rel,
                   mtime_ns=1_750_000_000_123_456_789 + i)
    if huge:
        make_sparse(os.path.join(base, HUGE), HUGE_SIZE, {0: b"start", HUGE_SIZE - 4: b"end!"})
    if IS_ROOT:
        os.chown(os.path.join(base, b"docs/secret.txt"), 1234, 2345)
    if HAS_XATTR:
        os.setxattr(os.path.join(base, b"docs/Report.txt"), "user.who", b"upper")
    settle_dirs(root)
    return root


@pytest.mark.parametrize("kind", DRIVES)
def test_backup_to_a_foreign_drive_restores_exactly_and_reruns_without_copying(
        kind: str, tmp_path: Path, clock: FakeClock) -> None:
    src = foreign_tree(tmp_path / "src" / "home")
    with foreign_drive(kind, tmp_path, "6G") as drive:
        first = run_backup(src, drive, clock)
        profile = _profile(drive)
        assert profile.fs_type == kind
        huge_fits = profile.max_file_size is None
        if huge_fits:
            assert not first.stats.issues, first.stats.issues
        else:  # FAT32: named before any byte is copied, the run goes on
            assert issue_paths(first.stats.issues, "skipped") == {b"home/" + HUGE}
            assert "too large" in first.stats.issues[0].message
            assert not (set_dir(drive) / "current" / "home" / os.fsdecode(HUGE)).exists()
        # the summary counts what was copied: the skipped file is neither new nor copied
        entries = 1 + sum(len(d) + len(f) for _, d, f in os.walk(src))  # with src itself
        assert first.stats.new == entries - (0 if huge_fits else 1), first.stats
        assert (first.stats.bytes_copied < 4 << 30) != huge_fits, first.stats
        assert (first.stats.bytes_total < 4 << 30) != huge_fits, first.stats

        before = listing(set_dir(drive))
        second = run_backup(src, drive, clock)
        s = second.stats
        assert (s.new, s.changed, s.metadata, s.deleted, s.moved, s.bytes_copied) == \
            (0, 0, 0, 0, 0, 0), s
        after = listing(set_dir(drive))
        touched = sorted(p for p in set(before) | set(after) if not p.startswith(b"catalog")
                         and _written(before.get(p), after.get(p), profile))
        # b"", the set's folder, only where the catalog is published whole by a rename
        assert touched in (([], [b""]) if not profile.rewrites else ([],)), \
            f"a no-op run wrote {touched}"

        assert not run_verify(drive).problems
        files = [r[0] for r in catalog_rows(drive, "SELECT path FROM entries WHERE kind='f'")]
        for path in (p for p in files if b"\\" not in p):  # (typed \ means /)
            # every version points at a file the drive holds
            for v in history(str(drive), SET, os.fsdecode(path)):
                assert (set_dir(drive) / v.location).is_file(), (path, v.location)
        some = next(p for p in files if p.count(b"/") >= 2)
        by_abs = history(str(drive), SET, os.fsdecode(os.path.join(
            os.fsencode(src.parent), some)))  # the file's own full path
        assert [v.record.path for v in by_abs] == [some]
        out = tmp_path / "restored"
        result = run_restore(drive, out)
        assert not result.issues, result.issues
        want = snapshot(src)
        if not huge_fits:
            del want[HUGE]
        assert_same_tree(snapshot(out / "home"), want, f"restore from {kind}")


@pytest.mark.parametrize("kind", DRIVES)
def test_awkward_names_are_stored_readably_and_case_twins_apart(
        kind: str, tmp_path: Path, clock: FakeClock) -> None:
    src = foreign_tree(tmp_path / "src" / "home", huge=False)
    with foreign_drive(kind, tmp_path) as drive:
        assert not run_backup(src, drive, clock).stats.issues
        current = set_dir(drive) / "current" / "home"
        stored = {os.fsencode(p.relative_to(current)) for p in current.rglob("*")}
        twins = [t for t in stored if t.lower().startswith((b"docs/report", b"photos"))]
        profile = _profile(drive)
        # every twin is a separate file on the drive, with its own content
        assert len([t for t in twins if t.lower().startswith(b"docs/report")]) == 3
        contents = {(current / os.fsdecode(t)).read_bytes() for t in twins
                    if (current / os.fsdecode(t)).is_file()}
        assert len(contents) == 6
        if profile.windows_names:
            for name in stored:
                last = name.rsplit(b"/", 1)[-1].decode()
                assert not set(last) & set(':*?"<>|\\'), last
                assert not last.endswith((".", " ")) and last.split(".")[0].upper() != "CON"
        if not profile.unicode_names:
            assert all(n.isascii() for n in stored)
        # a new twin next to files already on the drive keeps them apart too
        write_file(fs(src / "docs" / "rEPORT.txt"), b"a fourth twin",
                   mtime_ns=1_760_000_000 * 10**9)
        settle_dirs(src)
        assert run_backup(src, drive, clock).stats.new == 1
        assert not run_verify(drive).problems
        out = tmp_path / "restored"
        assert not run_restore(drive, out).issues
        assert_same_tree(snapshot(out / "home"), snapshot(src), f"restore from {kind}")


def _written(a: tuple[int, ...] | None, b: tuple[int, ...] | None,
             profile: TargetProfile) -> bool:
    """True when a path was made, removed or written. ntfs-3g reports a folder's size as
    its index happens to be laid out, and fusefat a time to the ns until it rounds it to
    FAT's 2 s: neither is a write."""
    if a is None or b is None:
        return a != b
    step = profile.mtime_granularity_ns
    times_a, times_b = [t // step for t in a[3:]], [t // step for t in b[3:]]
    return a[:2] != b[:2] or times_a != times_b or (stat.S_ISREG(a[0]) and a[2] != b[2])


def _profile(drive: Path) -> TargetProfile:
    catalog = Catalog(str(set_dir(drive) / "catalog.sqlite"))
    try:
        profile = catalog.profile()
    finally:
        catalog.close()
    assert profile is not None
    return profile


@pytest.mark.parametrize("kind", DRIVES)
def test_a_renamed_folder_is_renamed_on_the_drive_and_its_old_place_restorable(
        kind: str, tmp_path: Path, clock: FakeClock) -> None:
    src = foreign_tree(tmp_path / "src" / "home", huge=False)
    with foreign_drive(kind, tmp_path) as drive:
        first = run_backup(src, drive, clock)
        old_docs = snapshot(src / "docs")
        os.rename(src / "docs", src / "papers")
        settle_dirs(src)
        second = run_backup(src, drive, clock).stats
        files = sum(1 for p in (src / "papers").rglob("*") if p.is_file() and not p.is_symlink())
        folders = 1 + sum(1 for p in (src / "papers").rglob("*") if p.is_dir())
        assert second.bytes_copied == 0 and second.new == folders, second
        assert second.moved >= files - 1  # hard-linked twins move as links
        kept = sum(len(f) for _d, _s, f in os.walk(set_dir(drive) / "versions"))
        if not _profile(drive).hardlinks:
            assert kept == 0, "a drive without hard links must not get copies in versions/"
        assert not run_verify(drive).problems
        out = tmp_path / "asof"
        assert not run_restore(drive, out, as_of=str(first.run_id), paths=["home/docs"]).issues
        assert_same_tree(snapshot(out / "home" / "docs"), old_docs, "the folder as it was")
        now = tmp_path / "now"
        assert not run_restore(drive, now).issues
        assert_same_tree(snapshot(now / "home"), snapshot(src), f"restore from {kind}")
