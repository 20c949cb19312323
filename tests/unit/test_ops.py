"""Each pending operation can be replayed from any point it stopped at (FORMAT.md)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from twofold.backup.ops import apply_op
from twofold.core.errors import TargetError
from twofold.core.models import Entry, Kind
from twofold.fsinfo import disk
from twofold.sets import target as target_mod
from twofold.sets.catalog import Catalog, PendingOp
from twofold.sets.target import SetDir

RUN = "2026-01-01T000000Z"


def _set(tmp_path: Path) -> SetDir:
    sd = SetDir(str(tmp_path), "s")
    sd.create()
    return sd


def _write(path: bytes, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _read(path: bytes) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _meta(path: bytes) -> Entry:
    return Entry(path, Kind.FILE, mode=0o640, mtime_ns=1_000_000_000)


def test_move_from_every_stopping_point(tmp_path: Path) -> None:
    op = PendingOp(1, "move", b"d/new.txt", link_to=b"d/old.txt")
    for stop in ("before", "after-link", "done"):
        sd = _set(tmp_path / stop)
        _write(sd.cur(b"d/old.txt"), b"content")
        if stop in ("after-link", "done"):
            os.makedirs(os.path.dirname(sd.ver(RUN, b"d/old.txt")))
            os.link(sd.cur(b"d/old.txt"), sd.ver(RUN, b"d/old.txt"))
        if stop == "done":
            os.rename(sd.cur(b"d/old.txt"), sd.cur(b"d/new.txt"))
        for _ in range(2):  # a replay of a finished operation changes nothing
            apply_op(sd, RUN, op, _meta)
            assert not os.path.lexists(sd.cur(b"d/old.txt"))
            assert _read(sd.cur(b"d/new.txt")) == b"content"
            assert os.path.samefile(sd.ver(RUN, b"d/old.txt"), sd.cur(b"d/new.txt"))
            assert os.stat(sd.cur(b"d/new.txt")).st_mode & 0o777 == 0o640


def test_move_when_the_old_folder_already_went_to_versions(tmp_path: Path) -> None:
    sd = _set(tmp_path)
    _write(sd.ver(RUN, b"gone/a.txt"), b"kept")
    apply_op(sd, RUN, PendingOp(1, "move", b"here/a.txt", link_to=b"gone/a.txt"), _meta)
    assert _read(sd.cur(b"here/a.txt")) == b"kept"
    assert _read(sd.ver(RUN, b"gone/a.txt")) == b"kept"


def test_put_replay_keeps_the_old_version_once(tmp_path: Path) -> None:
    sd = _set(tmp_path)
    _write(sd.cur(b"f"), b"old")
    _write(os.path.join(sd.tmp, b"1-1"), b"new")
    op = PendingOp(1, "put", b"f", tmp="1-1")
    apply_op(sd, RUN, op, _meta)
    apply_op(sd, RUN, op, _meta)  # the temp file is gone: done before
    assert _read(sd.cur(b"f")) == b"new" and _read(sd.ver(RUN, b"f")) == b"old"


def test_put_after_the_old_file_was_moved_aside(tmp_path: Path) -> None:
    sd = _set(tmp_path)
    _write(sd.ver(RUN, b"f"), b"old")  # killed between the two renames
    _write(os.path.join(sd.tmp, b"1-1"), b"new")
    apply_op(sd, RUN, PendingOp(1, "put", b"f", tmp="1-1"), _meta)
    assert _read(sd.cur(b"f")) == b"new" and _read(sd.ver(RUN, b"f")) == b"old"


@pytest.mark.parametrize("replay", [True, False])
def test_put_over_a_file_keeps_it_in_versions(tmp_path: Path, replay: bool) -> None:
    # without a replay the put does not look first: the rename itself refuses to replace
    sd = _set(tmp_path)
    _write(sd.cur(b"d/f"), b"old")
    _write(os.path.join(sd.tmp, b"1-1"), b"new")
    apply_op(sd, RUN, PendingOp(1, "put", b"d/f", tmp="1-1"), _meta, replay=replay)
    assert _read(sd.cur(b"d/f")) == b"new" and _read(sd.ver(RUN, b"d/f")) == b"old"


@pytest.mark.parametrize("flag", [True, False], ids=["renameat2", "fallback"])
def test_rename_new_never_replaces(tmp_path: Path, flag: bool,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if not flag:  # a platform (or file system) without RENAME_NOREPLACE
        monkeypatch.setattr(disk, "_libc", lambda: None)
    a, b, c = (os.path.join(os.fsencode(tmp_path), n) for n in (b"a", b"b", b"c"))
    _write(a, b"A")
    _write(b, b"B")
    assert not disk.rename_new(a, b)
    assert _read(a) == b"A" and _read(b) == b"B"
    assert disk.rename_new(a, c)
    assert not os.path.exists(a) and _read(c) == b"A"
    with pytest.raises(FileNotFoundError):
        disk.rename_new(a, os.path.join(os.fsencode(tmp_path), b"d"))


def test_rmdir_keeps_anything_left_inside(tmp_path: Path) -> None:
    sd = _set(tmp_path)
    os.makedirs(sd.cur(b"d/empty/deeper"))
    _write(sd.cur(b"d/sub/left.txt"), b"left")
    os.symlink(b"somewhere", sd.cur(b"d/link"))
    apply_op(sd, RUN, PendingOp(1, "rmdir", b"d"), _meta)
    assert not os.path.lexists(sd.cur(b"d"))
    assert _read(sd.ver(RUN, b"d/sub/left.txt")) == b"left"
    assert os.readlink(sd.ver(RUN, b"d/link")) == b"somewhere"


def test_pending_order_puts_folder_removals_last_deepest_first(tmp_path: Path) -> None:
    sd = _set(tmp_path)
    cat = Catalog(os.fsdecode(sd.catalog), create=True)
    with cat.transaction():
        cat.add_pending(1, [PendingOp(1, "rmdir", b"a"), PendingOp(2, "rmdir", b"a/b/c"),
                            PendingOp(3, "put", b"z", tmp="1-1"),
                            PendingOp(4, "rmdir", b"a/b"), PendingOp(5, "remove", b"y")])
    assert [op.path for _, op in cat.pending()] == [b"z", b"y", b"a/b/c", b"a/b", b"a"]
    with cat.transaction():
        cat.clear_pending(1, 5)  # a batch's commit keeps folder removals for the run's end
    assert [op.op for _, op in cat.pending()] == ["rmdir"] * 3
    cat.close()


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_lock_is_held_until_its_process_ends_and_changes_nothing(tmp_path: Path) -> None:
    sd = _set(tmp_path)
    with sd.lock():
        pass
    lock_before, root_before = os.stat(sd.lock_path), os.stat(sd.root)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, sd.lock_path],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(TargetError, match="in use"), sd.lock():
            pass
    finally:
        holder.kill()  # as a crash would: the kernel drops its lock
        holder.wait()
    with sd.lock(), pytest.raises(TargetError, match="in use"), sd.lock():
        pass  # a second run in the same process is refused as well
    lock_after, root_after = os.stat(sd.lock_path), os.stat(sd.root)
    for field in ("st_ino", "st_size", "st_mtime_ns", "st_ctime_ns"):
        assert getattr(lock_after, field) == getattr(lock_before, field), field
        assert getattr(root_after, field) == getattr(root_before, field), field
    with open(sd.lock_path, "rb") as f:
        assert json.load(f) == {"released": True}  # what earlier versions read as free


def test_lock_without_flock_uses_an_exclusive_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(target_mod, "fcntl", None)  # a file system without locks
    sd = _set(tmp_path)
    excl = sd.lock_path + b".excl"
    with open(excl, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
    with pytest.raises(TargetError, match="in use"), sd.lock():
        pass
    proc = subprocess.Popen(["true"])  # a pid that has exited
    proc.wait()
    with open(excl, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": proc.pid}, f)
    with sd.lock(), open(excl) as f:
        assert json.load(f)["pid"] == os.getpid()
    assert not os.path.exists(excl)


def _everything_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_makedirs_makes_what_is_missing_inside_the_set(tmp_path: Path) -> None:
    sd = _set(tmp_path)
    deep = sd.cur(b"a/b/c")
    sd.makedirs(deep)
    sd.makedirs(deep)  # there already: fine
    assert os.path.isdir(deep)
    _write(sd.cur(b"a/file"), b"x")
    with pytest.raises(FileExistsError):
        sd.makedirs(sd.cur(b"a/file"))
    with pytest.raises(ValueError, match="not inside"):
        sd.makedirs(os.fsencode(tmp_path / "elsewhere"))


@pytest.mark.parametrize("op", [
    PendingOp(1, "mkdir", b"src/d050"),
    PendingOp(2, "move", b"src/new/x.txt", link_to=b"src/old.txt"),
    PendingOp(3, "remove", b"src/old.txt"),
])
def test_with_the_sets_folder_gone_nothing_is_made(tmp_path: Path, op: PendingOp) -> None:
    """A drive unmounted lazily mid-run leaves its empty mount point: the run's folders
    must not be made there again, on the system disk (the set's own folder is never made
    by an operation, and its absence says the drive is gone)."""
    mount = tmp_path / "BACKUP"
    sd = _set(mount)
    _write(sd.cur(b"src/old.txt"), b"x")
    os.makedirs(sd.ver(RUN, b"src"))
    for child in mount.iterdir():  # what the empty mount point shows after the unmount
        subprocess.run(["rm", "-rf", str(child)], check=True)
    with pytest.raises(FileNotFoundError):
        sd.makedirs(sd.cur(b"src/d050"))
    with contextlib.suppress(OSError):  # a removal finds nothing to do; the rest fail
        apply_op(sd, RUN, op, lambda _p: None, replay=False)
    assert _everything_under(mount) == []
    with pytest.raises(TargetError, match="the backup set's folder is gone"):
        sd.make_tmp()
    assert _everything_under(mount) == []
