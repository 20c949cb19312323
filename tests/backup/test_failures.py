"""What goes wrong: damaged copies, unreadable sources, an emptied source, overlapping
folders, a full target. Each must be named, refused or survived, never silently passed."""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import twofold.backup.apply as apply_mod
import twofold.backup.engine as engine_mod
from twofold.backup.engine import BackupOptions, BackupResult, backup
from twofold.backup.verify import verify
from twofold.core.errors import SafetyRefusal, TargetFullError, UsageError
from twofold.core.progress import NullProgress

from .conftest import (
    IS_ROOT,
    SET,
    T0,
    FakeClock,
    assert_same_tree,
    build_tree,
    catalog_rows,
    file_hash,
    fs,
    listing,
    run_backup,
    run_restore,
    run_verify,
    set_dir,
    snapshot,
    write_file,
)

NOBODY = 65534


def _flip_byte(path: Path, offset: int) -> None:
    """Damage one byte in place, keeping size and mtime (as bit rot would)."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _run_name(target: Path, run_id: int) -> str:
    return str(catalog_rows(target, "SELECT name FROM runs WHERE id=?", (run_id,))[0][0])


# damaged copies ------------------------------------------------------------------------------


@pytest.fixture
def damaged(tmp_path: Path, clock: FakeClock) -> tuple[Path, Path]:
    """A set of two runs with one byte flipped in current/ and one in versions/, and a
    file missing from current/."""
    src = tmp_path / "src"
    rng = random.Random(5)
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        write_file(src / name, rng.randbytes(20_000))
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    write_file(src / "b.txt", b"b, second version\n")
    assert run_backup(src, target, clock).run_id == 2
    sd = set_dir(target)
    _flip_byte(sd / "current" / "src" / "a.txt", 12_345)
    _flip_byte(sd / "versions" / _run_name(target, 2) / "src" / "b.txt", 0)
    (sd / "current" / "src" / "c.txt").unlink()
    return src, target


def test_verify_names_each_damaged_copy(damaged: tuple[Path, Path]) -> None:
    _src, target = damaged
    res = run_verify(target)
    found = {(p.path, p.kind) for p in res.problems}
    assert found == {(b"src/a.txt", "damaged"), (b"src/b.txt", "damaged"),
                     (b"src/c.txt", "missing")}, res.problems
    text = {p.path: p.message for p in res.problems}
    assert text[b"src/a.txt"].startswith("current/")
    assert text[b"src/b.txt"].startswith("versions/")
    assert res.checked == 5  # a, b (twice), c, d


def test_verify_against_source_reads_files_whose_size_and_time_are_unchanged(
        tmp_path: Path, clock: FakeClock) -> None:
    src = tmp_path / "src"
    write_file(src / "same.txt", b"the same bytes\n")
    write_file(src / "quiet.txt", b"first content\n")
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    # The source's bytes no longer match what was backed up, and nothing in its metadata
    # says so (as after a disk error): here the backed-up hash is changed instead.
    db = sqlite3.connect(set_dir(target) / "catalog.sqlite")
    with db:
        db.execute("UPDATE entries SET hash=zeroblob(32) WHERE path=?", (b"src/quiet.txt",))
    db.close()
    res = verify(str(target), SET, NullProgress(), against_source=True)
    found = {(p.path, p.message) for p in res.source_differences}
    assert found == {(b"src/quiet.txt",
                      "differs from the source although size and time are the same")}


def test_restore_reports_a_damaged_copy_and_does_not_write_it(
        damaged: tuple[Path, Path], tmp_path: Path) -> None:
    src, target = damaged
    dest = tmp_path / "restored"
    res = run_restore(target, dest)
    kinds = {i.path: i.kind for i in res.issues}
    assert kinds.get(b"src/a.txt") == "damaged", res.issues
    assert b"src/c.txt" in kinds, res.issues
    out = dest / "src"
    assert sorted(os.listdir(out)) == ["b.txt", "d.txt"], "a damaged or missing copy was written"
    for name in ("b.txt", "d.txt"):
        assert file_hash(fs(out / name)) == file_hash(fs(src / name))

    old = tmp_path / "restored-1"
    res = run_restore(target, old, as_of="1")
    kinds = {i.path: i.kind for i in res.issues}
    assert kinds.get(b"src/a.txt") == "damaged" and kinds.get(b"src/b.txt") == "damaged", \
        res.issues
    assert sorted(os.listdir(old / "src")) == ["d.txt"]


# unreadable sources --------------------------------------------------------------------------


def _drop_to_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _backup_in_child(src: Path, target: Path, start_ns: int) -> BackupResult:
    """One backup in a forked child process; as root, the child first drops to uid/gid
    65534, to whom mode 000 means something (root reads everything).

    A fork rather than a new interpreter: the test's Python may live where uid 65534
    cannot read it (a pyenv build under /root)."""
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(1, mp_context=ctx,
                             initializer=_drop_to_nobody if IS_ROOT else None) as pool:
        return pool.submit(backup, [str(src)], str(target), SET, BackupOptions(),
                           FakeClock(start_ns), NullProgress()).result(timeout=120)


def test_unreadable_file_and_folder_are_skipped_listed_and_kept(open_tmp: Path) -> None:
    if not hasattr(os, "setuid"):
        pytest.skip("no POSIX permissions: nothing can be made unreadable this way")
    src = open_tmp / "src"
    for i in range(3):
        write_file(src / f"ok-{i}.txt", b"readable %d\n" % i)
    for i in range(8):
        write_file(src / "locked" / f"l{i}.txt", b"locked file %d\n" % i)
    write_file(src / "locked" / "inner" / "deep.txt", b"deeper\n")
    write_file(src / "secret.txt", b"secret, first version\n")
    target = open_tmp / "target"
    target.mkdir()
    if IS_ROOT:
        for path in (src, target):
            subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(path)], check=True)
    first = _backup_in_child(src, target, T0)
    assert first.run_id == 1 and not first.stats.issues, first
    open_rows = set(catalog_rows(target, "SELECT path, hash FROM entries WHERE until_run IS NULL"))

    os.chmod(src / "locked", 0)
    os.chmod(src / "secret.txt", 0)
    write_file(src / "new-secret.txt", b"never readable\n", mode=0)
    if IS_ROOT:
        os.chown(src / "new-secret.txt", NOBODY, NOBODY)
    try:
        second = _backup_in_child(src, target, T0 + 86_400 * 10**9)
    finally:
        os.chmod(src / "locked", 0o755)
        os.chmod(src / "secret.txt", 0o644)

    issues = {(i.kind, i.path) for i in second.stats.issues}
    assert issues == {("skipped", b"src/locked"), ("skipped", b"src/secret.txt"),
                      ("skipped", b"src/new-secret.txt")}, second.stats.issues
    assert (second.stats.deleted, second.stats.skipped) == (0, 3), second.stats
    # every row of run 1 is still open: nothing under the folder was taken for deleted
    after = set(catalog_rows(target, "SELECT path, hash FROM entries WHERE until_run IS NULL"))
    assert open_rows <= after, sorted(open_rows - after)
    closed = {bytes(p) for (p,) in catalog_rows(  # type: ignore[arg-type]
        target, "SELECT path FROM entries WHERE until_run IS NOT NULL")}
    assert closed <= {b"src"}, sorted(closed)  # the folder's mtime changed, nothing else
    assert not os.path.exists(set_dir(target) / "versions" / _run_name(target, 2) / "src")
    # and run 2 restores them as run 1 saw them
    dest = open_tmp / "restored"
    res = run_restore(target, dest, as_of="2")
    assert not res.issues, res.issues
    for rel in ("locked/l0.txt", "locked/l7.txt", "locked/inner/deep.txt", "secret.txt"):
        assert (dest / "src" / rel).read_bytes() == (src / rel).read_bytes(), rel
    assert not (dest / "src" / "new-secret.txt").exists()


# refusals --------------------------------------------------------------------------------------


def test_mass_delete_guard_refuses_an_emptied_source(tmp_path: Path, clock: FakeClock) -> None:
    src = build_tree(tmp_path / "src", seed=2)
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, clock)
    before_snap = snapshot(src)
    sd = set_dir(target)
    before = {name: listing(sd / name) for name in ("current", "versions")}
    for child in src.iterdir():  # as a drive that is not mounted: the folder is there, empty
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()

    with pytest.raises(SafetyRefusal):
        run_backup(src, target, clock)

    for name, was in before.items():
        assert listing(sd / name) == was, f"a refused run changed {name}/"
    assert catalog_rows(target, "SELECT id, state FROM runs") == [(1, "complete")]

    result = run_backup(src, target, clock, allow_mass_delete=True)
    assert result.stats.deleted > 40
    assert os.listdir(sd / "current" / "src") == []
    dest = tmp_path / "restored"
    assert not run_restore(target, dest, as_of="1").issues
    assert_same_tree(snapshot(dest / "src"), before_snap, "restore as of the run before")


def test_target_inside_source_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    src = build_tree(tmp_path / "src", files=5)
    target = src / "backups"
    target.mkdir()
    with pytest.raises(UsageError):
        run_backup(src, target, clock)
    assert not (target / "twofold").exists()


def test_source_inside_target_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    target = tmp_path / "drive"
    src = build_tree(target / "src", files=5)
    with pytest.raises(UsageError):
        run_backup(src, target, clock)
    link = tmp_path / "innocent-looking"
    link.symlink_to(src)
    with pytest.raises(UsageError):  # the same folder reached through a symlink
        run_backup(link, target, clock)
    with pytest.raises(UsageError):  # the target itself as the source
        run_backup(target, target, clock)
    assert not (target / "twofold").exists()


def test_neighbour_folders_are_not_overlap(tmp_path: Path, clock: FakeClock) -> None:
    """`/x/src-backup` is not inside `/x/src`: a prefix of the name is not a parent."""
    src = build_tree(tmp_path / "src", files=5)
    target = tmp_path / "src-backup"
    target.mkdir()
    result = run_backup(src, target, clock)
    assert result.run_id == 1


# a full target ---------------------------------------------------------------------------------


class LoopFs:
    """A small ext4 file system in a file, loop-mounted (root only)."""

    def __init__(self, image: Path, mountpoint: Path) -> None:
        self.image = image
        self.mountpoint = mountpoint
        self.mounted = False

    def make(self, size: str) -> None:
        subprocess.run(["truncate", "-s", size, str(self.image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True)
        self.mountpoint.mkdir(exist_ok=True)
        self.mount()

    def mount(self) -> None:
        proc = subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mountpoint)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.skip(f"cannot loop-mount an ext4 image here: {proc.stderr.strip()}")
        self.mounted = True

    def umount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.mountpoint)], check=True)
            self.mounted = False

    def grow(self, size: str) -> None:
        """Make the file system bigger (as moving to a bigger drive would)."""
        self.umount()
        subprocess.run(["truncate", "-s", size, str(self.image)], check=True)
        subprocess.run(["e2fsck", "-f", "-y", str(self.image)], check=True,
                       capture_output=True)
        subprocess.run(["resize2fs", str(self.image)], check=True, capture_output=True)
        self.mount()


@pytest.fixture
def small_ext4(tmp_path: Path) -> Iterator[LoopFs]:
    """An 8 MiB ext4 mounted at tmp_path/mnt."""
    if not IS_ROOT:
        pytest.skip("a full target needs root: it mounts a small ext4 image on a loop device")
    missing = [t for t in ("mkfs.ext4", "mount", "e2fsck", "resize2fs")
               if shutil.which(t) is None]
    if missing or not os.path.exists("/dev/loop-control"):
        pytest.skip(f"no loop device or no e2fsprogs here (missing: {missing or 'loop'})")
    fs_ = LoopFs(tmp_path / "f.img", tmp_path / "mnt")
    fs_.make("8M")
    try:
        yield fs_
    finally:
        fs_.umount()


def _whole_files_only(current: Path, versions: list[dict[bytes, object]]) -> list[str]:
    """Files of current/ whose content is not one of the given versions of that path."""
    bad = []
    for path, node in snapshot(current).items():
        if node.type != "file":
            continue
        known = {v[path].blake3 for v in versions if path in v}  # type: ignore[attr-defined]
        if node.blake3 not in known:
            bad.append(f"{path!r}: {node.size} bytes, not a whole version")
    return bad


@pytest.mark.root
def test_full_target_stops_cleanly_and_a_bigger_one_completes(
        small_ext4: LoopFs, tmp_path: Path, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apply_mod, "BATCH_FILES", 3)  # some batches land before the disk fills
    rng = random.Random(8)
    # The run would be refused before copying (test_drive_checks); here something else
    # fills the drive while it runs, so the check of free space is left out.
    monkeypatch.setattr(engine_mod, "_check_space", lambda *_: None)
    src = tmp_path / "src"
    for i in range(5):
        write_file(src / f"a{i}.bin", rng.randbytes(700_000))
    target = small_ext4.mountpoint
    run_backup(src, target, clock)
    first = snapshot(src)
    for i in range(2):
        write_file(src / f"a{i}.bin", rng.randbytes(600_000))
    # Batches of 3 x 300 KB: the first ones fit with a clear margin, the drive fills later.
    for i in range(14):
        write_file(src / f"b{i:02d}.bin", rng.randbytes(300_000))
    second = snapshot(src)

    with pytest.raises(TargetFullError):
        run_backup(src, target, clock)
    current = set_dir(target) / "current" / "src"
    assert not _whole_files_only(current, [first, second])  # type: ignore[list-item]
    landed = [p for p, n in snapshot(current).items()
              if n.type == "file" and (p not in first or first[p].blake3 != n.blake3)]
    assert landed, "the drive filled before any batch landed: this no longer tests a stop mid-run"
    assert set(os.listdir(current)) <= {p.decode() for p in second}, "stray files in current/"

    small_ext4.grow("64M")
    result = run_backup(src, target, clock)
    assert result.run_id is not None
    assert_same_tree(snapshot(current), second, "current/ after the run on the bigger drive")
    assert not run_verify(target).problems
    dest = tmp_path / "restored"
    assert not run_restore(target, dest, as_of="1").issues
    assert_same_tree(snapshot(dest / "src"), first, "restore as of the first run")


@pytest.mark.root
@pytest.mark.parametrize("chunks", [(1 << 16,), (1 << 16, 1 << 12, 1)],
                         ids=["all-but-a-few-KiB", "to-the-last-byte"])
def test_full_target_while_writing_the_catalog_or_lock(
        small_ext4: LoopFs, tmp_path: Path, clock: FakeClock, chunks: tuple[int, ...]) -> None:
    """Files that need no data blocks still copy onto a full drive, but the catalog (or the
    lock file) cannot grow. That is a full target too: TargetFullError, not a raw sqlite3
    or OS error."""
    src = tmp_path / "src"
    for i in range(5):
        write_file(src / f"a{i}.bin", b"small %d\n" % i)
    target = small_ext4.mountpoint
    run_backup(src, target, clock)
    filler = target / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:  # fill every block, reserved ones too (we are root)
        for size in chunks:
            try:
                while os.write(fd, bytes(size)):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    for i in range(300):
        write_file(src / f"empty-{i:03d}", b"")
    snap = snapshot(src)

    first = _error_of(lambda: run_backup(src, target, clock))
    filler.unlink()  # freeing space
    later = _error_of(lambda: run_backup(src, target, clock))

    problems = [] if isinstance(first, TargetFullError) else [
        f"a full target raised {first!r}, not TargetFullError"]
    if later is not None:
        problems.append(f"after space was freed, the next run raised {later!r}")
    assert not problems, "\n".join(problems)
    assert_same_tree(snapshot(set_dir(target) / "current" / "src"), snap,
                     "current/ after space was freed")
    assert not run_verify(target).problems


def _error_of(call: Callable[[], object]) -> BaseException | None:
    """The exception `call` raised, or None."""
    try:
        call()
    except Exception as err:
        return err
    return None
