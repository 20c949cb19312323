"""Copy a real system tree (the machine's /usr/share and /usr/lib) as a benchmark source.

A generated tree has the shape we chose; a system tree has the one packages gave it: deep
folders, many tiny files, hard links and symlinks in their real proportions. `cp -a` keeps
modes, owners, times, symlinks and hard links. Entries that twofold leaves out by default
(`__pycache__/`, `.cache/`, ...: twofold.fsinfo.excludes.DEFAULT_EXCLUDES) are removed from
the copy, and so are sockets, FIFOs and device nodes, so both tools copy the same set.
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass

DEFAULT_ROOTS = ("/usr/share", "/usr/lib")
# twofold's default excludes, by last name (kept in step with fsinfo/excludes.py by hand:
# bench/ does not import src/)
EXCLUDED_DIRS = {"__pycache__", ".cache", ".thumbnails", ".Trash", "$RECYCLE.BIN",
                 "System Volume Information"}
EXCLUDED_FILES = {".DS_Store", "Thumbs.db"}


@dataclass
class Summary:
    """What was copied."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0
    removed: int = 0
    seconds: float = 0.0


def tree_bytes(roots: tuple[str, ...] = DEFAULT_ROOTS) -> int:
    """Bytes the roots hold (st_size of regular files, hard links once), for a space check."""
    total, seen = 0, set()
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                try:
                    st = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def _excluded(name: str, is_dir: bool) -> bool:
    if is_dir:
        return name in EXCLUDED_DIRS or name.startswith(".Trash-")
    return name in EXCLUDED_FILES


def _prune(out: str) -> int:
    """Remove what twofold would not copy by default, and special files; count them."""
    removed = 0
    for folder, dirs, files in os.walk(out):
        for name in list(dirs):
            path = os.path.join(folder, name)
            if _excluded(name, True) and not os.path.islink(path):
                subprocess.run(["rm", "-rf", "--", path], check=True)
                dirs.remove(name)
                removed += 1
        for name in files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if _excluded(name, False) or not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                os.unlink(path)
                removed += 1
    return removed


def summarize(out: str) -> Summary:
    """Count the copy's entries."""
    s = Summary()
    inodes: set[int] = set()
    for folder, dirs, files in os.walk(out):
        s.dirs += len(dirs)
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            if stat.S_ISLNK(st.st_mode):
                s.symlinks += 1
            elif st.st_ino in inodes:
                s.hardlinks += 1
            else:
                inodes.add(st.st_ino)
                s.files += 1
                s.bytes += st.st_size
        s.symlinks += sum(1 for d in dirs if os.path.islink(os.path.join(folder, d)))
    return s


def copy_tree(out: str, roots: tuple[str, ...] = DEFAULT_ROOTS) -> Summary:
    """Copy each root to `out`/<its last name> (`out` must not exist or be empty)."""
    t0 = time.monotonic()
    os.makedirs(out, exist_ok=True)
    if os.listdir(out):
        raise SystemExit(f"realtree: {out} is not empty")
    for root in roots:
        subprocess.run(["cp", "-a", "--", root, os.path.join(out, os.path.basename(root))],
                       check=True)
    removed = _prune(out)
    s = summarize(out)
    s.removed = removed
    s.seconds = time.monotonic() - t0
    return s


def describe(s: Summary) -> str:
    """One line about a copy."""
    return (f"{s.files} files, {s.hardlinks} extra hard-link names, {s.symlinks} symlinks, "
            f"{s.dirs} folders, {s.bytes / (1 << 20):.0f} MiB ({s.removed} default-excluded "
            f"or special entries removed); copied in {s.seconds:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Command line: copy the roots into --out."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="folder to create (must be empty)")
    ap.add_argument("roots", nargs="*", default=list(DEFAULT_ROOTS),
                    help="folders to copy (/usr/share /usr/lib)")
    args = ap.parse_args(argv)
    print(describe(copy_tree(args.out, tuple(args.roots))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
