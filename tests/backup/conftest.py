"""Shared helpers for the backup engine's integration tests: seeded trees, snapshots, a clock.

Paths in snapshots are bytes relative to the snapshotted folder (b"" is the folder itself),
so that names which are not UTF-8 survive.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import blake3
import pytest

from twofold.backup.engine import BackupOptions, BackupResult, backup
from twofold.backup.restore import RestoreResult, restore
from twofold.backup.verify import VerifyResult, verify
from twofold.core.progress import NullProgress

SET = "main"
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _user_xattrs_work() -> bool:
    """True when the temporary folder's file system keeps user xattrs."""
    if not hasattr(os, "setxattr"):
        return False
    with tempfile.NamedTemporaryFile() as f:
        try:
            os.setxattr(f.name, "user.twofold-probe", b"1")
        except OSError:
            return False
    return True


HAS_XATTR = _user_xattrs_work()  # where not, trees have none and xattr checks skip


# a clock ---------------------------------------------------------------------------------


class FakeClock:
    """Tells a time that moves `step_ns` forward at every reading, so runs get later names."""

    def __init__(self, start_ns: int = T0, step_ns: int = 60 * 10**9) -> None:
        self.t = start_ns
        self.step_ns = step_ns

    def now_ns(self) -> int:
        """The current fake time; the next reading is later."""
        t = self.t
        self.t += self.step_ns
        return t

    def jump(self, seconds: int) -> None:
        """Move the clock forward (the next run starts a while later)."""
        self.t += seconds * 10**9


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock starting on 2026-01-01."""
    return FakeClock()


# building trees ----------------------------------------------------------------------------


def fs(path: str | bytes | Path) -> bytes:
    """A path as bytes."""
    return os.fsencode(path)


def write_file(path: str | bytes | Path, data: bytes, mtime_ns: int | None = None,
               mode: int | None = None) -> None:
    """Create or overwrite a file, making its folder; optionally set its mtime and mode."""
    p = fs(path)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(p, mode)
    if mtime_ns is not None:
        os.utime(p, ns=(mtime_ns, mtime_ns))


def rewrite_in_place(path: str | bytes | Path, data: bytes) -> None:
    """Overwrite a file's content through the same inode (as an editor saving in place)."""
    with open(fs(path), "r+b") as f:
        f.write(data)
        f.truncate()


def make_sparse(path: str | bytes | Path, size: int, chunks: dict[int, bytes]) -> None:
    """A file of `size` bytes that is a hole except for `chunks` (offset -> data)."""
    p = fs(path)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.truncate(size)
        for off, data in chunks.items():
            f.seek(off)
            f.write(data)


def is_sparse(path: str | bytes | Path) -> bool:
    """True when the file takes less space on disk than its size."""
    st = os.stat(fs(path))
    return st.st_blocks * 512 < st.st_size


def set_xattr(path: str | bytes | Path, name: str, value: bytes) -> None:
    """Set a user xattr (callers check HAS_XATTR first)."""
    os.setxattr(fs(path), name, value, follow_symlinks=False)


def rand_bytes(rng: random.Random, n: int) -> bytes:
    """`n` seeded pseudo-random bytes."""
    return rng.randbytes(n)


def build_tree(root: Path, seed: int = 1, files: int = 40) -> Path:
    """A seeded source tree with every kind of thing a backup must keep.

    Folders (one empty), small and medium files, a 2 MiB file, a sparse file, a symlink,
    a dangling symlink, a hard-linked pair, user xattrs on a file and a folder, a name
    that is not UTF-8, modes other than 644, and fixed mtimes.
    """
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    base = fs(root)
    when = T0 - 86_400 * 10**9 * 30
    dirs = [b"docs", b"docs/letters", b"pics", b"music/albums/one", b"data"]
    for d in dirs:
        os.makedirs(os.path.join(base, d), exist_ok=True)
    for i in range(files):
        d = dirs[i % len(dirs)]
        size = rng.choice([0, 1, 100, 4096, 5000, 70_000])
        write_file(os.path.join(base, d, b"f%03d.bin" % i), rand_bytes(rng, size),
                   mtime_ns=when + i * 10**9 + 123)
    write_file(os.path.join(base, b"data/big.bin"), rand_bytes(rng, (2 << 20) + 17),
               mtime_ns=when)
    make_sparse(os.path.join(base, b"data/sparse.img"), 8 << 20,
                {0: b"head", 3 << 20: rand_bytes(rng, 5000), (8 << 20) - 3: b"end"})
    write_file(os.path.join(base, b"docs/script.sh"), b"#!/bin/sh\necho hi\n", mode=0o750)
    write_file(os.path.join(base, b"docs/secret.txt"), b"only me\n", mode=0o600)
    write_file(os.path.join(base, b"docs/caf\xe9.txt"), b"latin-1 name\n")
    os.symlink(b"../docs/f000.bin", os.path.join(base, b"pics/link-to-f000"))
    os.symlink(b"/nowhere/at/all", os.path.join(base, b"pics/dangling"))
    write_file(os.path.join(base, b"data/hard-a"), b"shared content\n" * 100)
    os.link(os.path.join(base, b"data/hard-a"), os.path.join(base, b"data/hard-b"))
    os.makedirs(os.path.join(base, b"empty"))
    if HAS_XATTR:
        set_xattr(os.path.join(base, b"docs/f000.bin"), "user.colour", b"blue")
        set_xattr(os.path.join(base, b"docs/letters"), "user.tag", b"folder")
    os.chmod(os.path.join(base, b"pics"), 0o750)
    settle_dirs(root)
    return root


def settle_dirs(root: Path, mtime_ns: int | None = None) -> None:
    """Give every folder a fixed mtime (a run's renames must not leak into them)."""
    when = mtime_ns if mtime_ns is not None else T0 - 86_400 * 10**9
    for dirpath, _dirs, _files in os.walk(fs(root)):
        os.utime(dirpath, ns=(when, when))


# snapshots ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """What a test compares for one path."""

    type: str  # "file", "dir", "symlink", "other"
    blake3: str | None
    size: int | None
    mode: int
    mtime_ns: int
    uid: int
    gid: int
    target: bytes | None
    xattrs: tuple[tuple[str, bytes], ...]
    links: tuple[bytes, ...] | None  # every path of the tree sharing this file's inode


Snapshot = dict[bytes, Node]


def file_hash(path: bytes) -> str:
    """BLAKE3 of a file's content, hex."""
    h = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return str(h.hexdigest())


def user_xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    """The user.* extended attributes of a path, sorted; () for symlinks or without support."""
    if not HAS_XATTR:
        return ()
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False))
                        for n in names if n.startswith("user.")))


def snapshot(tree: str | bytes | Path, *, with_hash: bool = True) -> Snapshot:
    """Type, content BLAKE3, mode, mtime, owner, symlink target, user xattrs and hard-link
    grouping of every path below `tree` (and of `tree` itself, under b"")."""
    root = fs(tree)
    out: Snapshot = {}
    inodes: dict[tuple[int, int], list[bytes]] = {}
    raw: dict[bytes, dict[str, object]] = {}

    def visit(rel: bytes) -> None:
        abs_path = os.path.join(root, rel) if rel else root
        st = os.lstat(abs_path)
        info: dict[str, object] = {
            "mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns,
            "uid": st.st_uid, "gid": st.st_gid, "blake3": None, "size": None,
            "target": None, "xattrs": user_xattrs(abs_path)}
        if stat.S_ISDIR(st.st_mode):
            info["type"] = "dir"
            for name in sorted(os.listdir(abs_path)):
                visit(os.path.join(rel, name) if rel else name)
        elif stat.S_ISREG(st.st_mode):
            info["type"] = "file"
            info["size"] = st.st_size
            if with_hash:
                info["blake3"] = file_hash(abs_path)
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        elif stat.S_ISLNK(st.st_mode):
            info["type"] = "symlink"
            info["target"] = os.readlink(abs_path)
            info["mode"] = 0o777
        else:
            info["type"] = "other"
        raw[rel] = info

    visit(b"")
    group_of: dict[bytes, tuple[bytes, ...]] = {}
    for paths in inodes.values():
        if len(paths) > 1:
            for p in paths:
                group_of[p] = tuple(sorted(paths))
    for rel, info in raw.items():
        out[rel] = Node(links=group_of.get(rel), **info)  # type: ignore[arg-type]
    return out


def snapshot_diff(got: Snapshot, want: Snapshot, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """Human-readable differences between two snapshots (empty when equal)."""
    lines: list[str] = []
    for path in sorted(set(got) | set(want)):
        shown = path.decode("utf-8", "backslashreplace") or "."
        if path not in got:
            lines.append(f"{shown}: missing")
            continue
        if path not in want:
            lines.append(f"{shown}: unexpected ({got[path].type})")
            continue
        a, b = got[path], want[path]
        for name in Node.__slots__:
            if name in ignore:
                continue
            va, vb = getattr(a, name), getattr(b, name)
            if va != vb:
                if name == "mode":
                    va, vb = oct(va), oct(vb)
                lines.append(f"{shown}: {name} is {va!r}, expected {vb!r}")
    return lines


def assert_same_tree(got: Snapshot, want: Snapshot, what: str,
                     ignore: tuple[str, ...] = ()) -> None:
    """Fail with the list of differences when two snapshots differ."""
    diff = snapshot_diff(got, want, ignore=ignore)
    assert not diff, f"{what} differs in {len(diff)} ways:\n  " + "\n  ".join(diff[:60])


def listing(tree: str | bytes | Path) -> dict[bytes, tuple[int, int, int, int, int]]:
    """(mode, inode, size, mtime, ctime) of every path below `tree`: any write shows."""
    root = fs(tree)
    out: dict[bytes, tuple[int, int, int, int, int]] = {}
    if not os.path.exists(root):
        return out
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_ino, st.st_size,
                                             st.st_mtime_ns, st.st_ctime_ns)
    st = os.lstat(root)
    out[b""] = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


# the engine --------------------------------------------------------------------------------


def set_dir(target: str | Path) -> Path:
    """The folder of the test set on a target."""
    return Path(target) / "twofold" / SET


def run_backup(sources: list[Path] | Path, target: Path, clock: FakeClock,
               **options: object) -> BackupResult:
    """One backup run of the test set, through the Python API."""
    srcs = sources if isinstance(sources, list) else [sources]
    clock.jump(3600)
    return backup([str(s) for s in srcs], str(target), SET,
                  BackupOptions(**options),  # type: ignore[arg-type]
                  clock, NullProgress())


def run_restore(target: Path, dest: Path, as_of: str | None = None,
                paths: list[str] | None = None) -> RestoreResult:
    """Restore the test set (all of it unless `paths`) into `dest`."""
    return restore(str(target), SET, str(dest), paths or [], as_of, False, NullProgress(), UTC)


def run_verify(target: Path) -> VerifyResult:
    """Verify every kept copy of the test set."""
    return verify(str(target), SET, NullProgress())


def catalog_rows(target: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Rows of a read-only query on the set's catalog."""
    db = sqlite3.connect(f"file:{set_dir(target) / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return list(db.execute(sql, args))
    finally:
        db.close()


def issue_paths(issues: list[object], kind: str | None = None) -> set[bytes]:
    """Paths of the issues of one kind (all kinds when None)."""
    return {i.path for i in issues  # type: ignore[attr-defined]
            if kind is None or i.kind == kind}  # type: ignore[attr-defined]


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary folder every user can enter (for runs as another user); removed after."""
    path = Path(tempfile.mkdtemp(prefix="twofold-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
