"""The walk looks entries up relative to an open folder; by path where it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from twofold.core.models import Entry, Kind, Skipped
from twofold.fsinfo import scan
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Scanner, Source

REPO = Path(__file__).resolve().parents[2]


def _tree(root: Path) -> None:
    """Folders whose names sort around "name/" (a, a-b, a.c, a0), a symlink, an
    undecodable name, an empty folder, nesting."""
    for folder in ("a", "a-b", "a.c", "a0", "a/x/y", "a/x-z", "empty"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i, folder in enumerate(("a", "a-b", "a.c", "a0", "a/x/y", "a/x-z", ".")):
        (root / folder / f"f{i}.txt").write_bytes(b"x" * i)
    os.symlink("a/f0.txt", root / "link")
    (root / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1")


Row = tuple[bytes, Kind, int, int, int, bytes | None]


def _walk(root: Path, lo: bytes = b"", hi: bytes | None = None) -> list[Row]:
    out: list[Row] = []
    for e in Scanner([Source(b"src", os.fsencode(root))], Excluder([]), lo, hi):
        assert isinstance(e, Entry), e
        out.append((e.path, e.kind, e.size, e.mtime_ns, e.ino, e.target))
    return out


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_by_descriptor_and_by_path_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    _tree(tmp_path)
    by_fd = _walk(tmp_path)
    assert [p for p, *_ in by_fd] == sorted(p for p, *_ in by_fd)
    assert (b"src/link", Kind.SYMLINK) in [(p, k) for p, k, *_ in by_fd]
    assert b"src/caf\xe9" in [p for p, *_ in by_fd]
    assert b"src/a/x/y/f4.txt" in [p for p, *_ in by_fd]
    monkeypatch.setattr(scan, "_BY_FD", False)
    assert _walk(tmp_path) == by_fd
    monkeypatch.undo()
    part = _walk(tmp_path, b"src/a.c", b"src/a0/f3.txt")  # a range: only its entries
    assert part == [row for row in by_fd if b"src/a.c" <= row[0] < b"src/a0/f3.txt"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_descriptor_is_left_open(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = _open_fds()
    _walk(tmp_path)
    assert _open_fds() == before
    walk = iter(Scanner([Source(b"src", os.fsencode(tmp_path))], Excluder([])))
    for _ in range(6):  # stopped halfway, inside nested folders
        next(walk)
    assert _open_fds() > before
    walk.close()  # type: ignore[attr-defined]
    assert _open_fds() == before


def test_unreadable_folder_is_skipped_and_closed(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that cannot be opened (as a non-root user's chmod 0 would give; root
    reads anything, so the refusal is injected) is reported and the walk goes on."""
    _tree(tmp_path)
    real_open = os.open

    def refuse(path: bytes, flags: int, *args: object, **kwargs: object) -> int:
        if os.fsencode(path) == b"a0":
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refuse)
    before = _open_fds()
    found = list(Scanner([Source(b"src", os.fsencode(tmp_path))], Excluder([])))
    assert _open_fds() == before
    skipped = [e for e in found if isinstance(e, Skipped)]
    assert [(e.path, e.is_dir) for e in skipped] == [(b"src/a0", True)]
    assert b"src/a0/f3.txt" not in [e.path for e in found]
    assert b"src/a.c/f2.txt" in [e.path for e in found]


def test_tree_deeper_than_the_descriptor_limit(tmp_path: Path) -> None:
    """120 levels with 100 descriptors allowed: past MAX_HELD levels the walk goes by
    path, so it neither runs out nor skips anything."""
    deep = tmp_path.joinpath(*["d"] * 120)
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("here")
    code = (
        "import os, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))\n"
        "from twofold.fsinfo.scan import Scanner, Source\n"
        "from twofold.fsinfo.excludes import Excluder\n"
        "paths = [e.path for e in Scanner([Source(b's', os.fsencode(sys.argv[1]))],"
        " Excluder([]))]\n"
        "print(len(paths), paths[-1].endswith(b'/bottom.txt'))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True, env={**os.environ,
                                                     "PYTHONPATH": str(REPO / "src")})
    assert out.stdout.split() == ["122", "True"]  # s, 120 folders, the file
