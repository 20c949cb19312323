"""New files going into folders the run made are renamed into place without a look first
(backup/fresh.py), and nothing that was on the drive before is ever taken for fresh."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

import twofold.backup.apply as apply_mod
from twofold.backup.fresh import Fresh

from ..drives import foreign_drive
from .conftest import (
    FakeClock,
    assert_same_tree,
    fs,
    run_backup,
    run_restore,
    run_verify,
    set_dir,
    settle_dirs,
    snapshot,
    write_file,
)

# --- the bookkeeping ---------------------------------------------------------------------------


def test_only_folders_the_run_made_know_their_names() -> None:
    fresh = Fresh()
    assert not fresh.absent(b"/t/current/a/x"), "a folder the run did not make"
    fresh.made(b"/t/current/a")
    assert fresh.absent(b"/t/current/a/x")
    fresh.claim(b"/t/current/a/Report.txt")
    for same in (b"Report.txt", b"report.TXT", b"REPORT.txt"):
        assert not fresh.absent(b"/t/current/a/" + same), same
    assert fresh.absent(b"/t/current/a/Report.txt.bak")
    # exFAT upper-cases names to compare them: dotless i and I are one name there
    fresh.claim("/t/current/a/\u0131.txt".encode())
    assert not fresh.absent(b"/t/current/a/i.txt")
    assert not fresh.absent(b"/t/current/a/I.TXT")


def test_a_folder_is_forgotten_once_the_run_moves_past_it() -> None:
    fresh = Fresh()
    fresh.made(b"/c/d")
    fresh.made(b"/c/d/sub")
    fresh.claim(b"/c/d/sub")  # as apply_op does after every operation, mkdir too
    fresh.claim(b"/c/d/sub/f")
    assert fresh.absent(b"/c/d/g") and fresh.absent(b"/c/d/sub/g")
    fresh.claim(b"/c/d2/f")  # a sibling whose name starts with the folder's
    assert not fresh.absent(b"/c/d/g") and not fresh.absent(b"/c/d/sub/g")
    fresh.made(b"/c/e")
    fresh.claim(b"/c/e/deep/f")  # deeper, in a folder the run did not make
    assert fresh.absent(b"/c/e/g"), "an ancestor of where the run is stays known"


def test_names_in_the_folder_of_the_last_one_keep_the_bookkeeping_exact() -> None:
    """claim() skips its look at the kept folders when the name goes into the folder the
    one before went into; random runs of made/claim give the same answers as a claim that
    always looks (the rule in the docstring: keep `path` and the folders on its way)."""
    rng = random.Random(7)
    names = [b"a", b"b", b"ab"]
    paths = [b"/t/" + b"/".join(p) for n in (1, 2, 3) for p in itertools.product(names,
                                                                               repeat=n)]
    for _ in range(300):
        fresh, model = Fresh(), {}  # model: folder -> names, kept as the rule says
        path = rng.choice(paths)
        for _step in range(25):
            roll = rng.random()  # as runs go: the same path again (mkdir, then its
            if roll > 0.6:       # claim), a name beside it, or anywhere
                path = rng.choice(paths)
            elif roll > 0.3:
                path = os.path.dirname(path) + b"/" + rng.choice(names)
            parent, name = os.path.split(path)
            model = {d: n for d, n in model.items() if path == d or path.startswith(d + b"/")}
            if parent in model:
                model[parent].add(name.upper().decode())
            if rng.random() < 0.3:
                fresh.made(path)
                model[path] = set()
            else:
                fresh.claim(path)
            for probe in paths:
                folder, leaf = os.path.split(probe)
                want = folder in model and leaf.upper().decode() not in model[folder]
                assert fresh.absent(probe) == want, (probe, path)


# --- on drives ---------------------------------------------------------------------------------


def test_a_file_in_a_folder_the_catalog_does_not_know_is_kept_not_overwritten(
        tmp_path: Path, clock: FakeClock) -> None:
    """A folder already on the drive is not fresh, even though the catalog has no row for
    it: what is in it goes to versions/, as any replaced file does."""
    src = tmp_path / "src" / "home"
    write_file(src / "old" / "keep.txt", b"kept")
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    write_file(src / "new" / "a.txt", b"from the source")
    settle_dirs(src)
    stray = set_dir(target) / "current" / "home" / "new" / "a.txt"
    write_file(stray, b"put there by hand")
    result = run_backup(src, target, clock)
    assert stray.read_bytes() == b"from the source"
    kept = list((set_dir(target) / "versions").rglob("a.txt"))
    assert [p.read_bytes() for p in kept] == [b"put there by hand"], result.stats


def _counting_looks(monkeypatch: pytest.MonkeyPatch, under: Path) -> list[bytes]:
    looks: list[bytes] = []
    real: Callable[[bytes | str], bool] = os.path.lexists
    prefix = fs(under)

    def lexists(path: bytes | str) -> bool:
        if fs(path).startswith(prefix):
            looks.append(fs(path))
        return real(path)

    monkeypatch.setattr(os.path, "lexists", lexists)
    return looks


def test_a_first_run_to_exfat_looks_once_per_folder_and_keeps_case_twins_apart(
        tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """exFAT scans a whole folder for every name looked for that is not there. A first run
    makes every folder, so it looks only for the folders, not for each of its files; case
    twins that fall in different batches of a folder still both survive."""
    monkeypatch.setattr(apply_mod, "BATCH_FILES", 7)
    src = tmp_path / "src" / "home"
    folders, per = 4, 30
    for d in range(folders):
        for i in range(per):
            write_file(src / f"folder {d}" / f"file {i:02}.txt", b"%d/%d" % (d, i),
                       mtime_ns=1_700_000_000 * 10**9 + i)
    # twins in batches apart: upper case sorts first, the files between fill a batch
    odd = ["A twin.txt", "a twin.txt", "Z.txt", "z.TXT", *(f"N{i}.txt" for i in range(8))]
    for name in odd:
        write_file(src / "folder 1" / name, name.encode(), mtime_ns=1_700_000_000 * 10**9)
    settle_dirs(src)
    with foreign_drive("exfat", tmp_path) as drive:
        looks = _counting_looks(monkeypatch, set_dir(drive) / "current")
        result = run_backup(src, drive, clock)
        monkeypatch.undo()
        files = folders * per + len(odd)
        assert result.stats.new == files + folders + 1 and not result.stats.issues
        assert len(looks) <= 2 * (folders + 1) + 4, \
            f"{len(looks)} looks for {files} new files in {folders} new folders: {looks[:8]}"
        current = set_dir(drive) / "current" / "home" / "folder 1"
        assert len([p for p in os.listdir(current) if p.lower() == "a twin.txt"]) == 1
        assert len([p for p in os.listdir(current) if p.lower().startswith("a twin")]) == 2
        assert not run_verify(drive).problems
        out = tmp_path / "restored"
        assert not run_restore(drive, out).issues
        assert_same_tree(snapshot(out / "home"), snapshot(src), "restore from exfat")
