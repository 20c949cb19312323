"""Reading through `twofold image mount` against `twofold image restore` (issue 19):
an ext4 volume holding one --size MB file (half random, half text) and a folder of
--entries small files is imaged; then, with the page cache dropped before each:

- restore: `twofold image restore` of the image to a new file (its used bytes per second);
- mount read: the big file read (cat) through a fresh `twofold image mount --background`;
- list: the folder of --entries names listed (os.listdir) and then `ls -l` (a stat of
  each) through a fresh mount, cold.

Goals: mount read >= 0.5x the restore's throughput; the cold listing <= 1 s. Needs root
(mkfs.ext4 -d, loop devices, FUSE). Prints the figures and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import drop_caches, load_text

MB = 1 << 20
TWOFOLD = [sys.executable, "-m", "twofold"]


def sh(*cmd: str | Path) -> str:
    """Run, failing loudly; stdout."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def make_tree(top: Path, size_mb: int, entries: int) -> None:
    """The big file (half random, half text-like) and the folder of small files."""
    rng = random.Random(19)
    text = (b"twofold mounts images read-only; " * 40_000)[:MB]
    with open(top / "big.bin", "wb") as f:
        for i in range(size_mb):
            f.write(rng.randbytes(MB) if i % 2 else text)
    many = top / "many"
    many.mkdir()
    for i in range(entries):
        (many / f"entry-{i:05d}.txt").write_bytes(b"x" * (i % 300))


def mounted_time(store: Path, point: Path, what: list[str]) -> float:
    """Seconds `what` takes through a fresh mount, the page cache dropped first."""
    sh(*TWOFOLD, "image", "mount", store, "vol", point, "--background")
    try:
        drop_caches()
        start = time.monotonic()
        subprocess.run(what, stdout=subprocess.DEVNULL, check=True)
        return time.monotonic() - start
    finally:
        sh(*TWOFOLD, "image", "umount", point)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="MB of the big file")
    ap.add_argument("--entries", type=int, default=10_000, help="files in the folder")
    ap.add_argument("--workdir", default=None, help="where to work (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="twofold-bench-mount-"))
    tree, store, point = work / "tree", work / "store", work / "mnt"
    for d in (tree, store, point):
        d.mkdir(parents=True, exist_ok=True)
    make_tree(tree, args.size, args.entries)
    vol = work / "vol.img"
    with open(vol, "wb") as f:
        f.truncate((args.size + 256) * MB + args.entries * 8192)
    sh("mkfs.ext4", "-q", "-F", "-d", tree, vol)
    sh(*TWOFOLD, "image", "create", vol, "--to", store, "--name", "vol")
    used = int(sh("du", "-s", "--block-size=1", "--apparent-size", tree).split()[0])

    drop_caches()
    out = work / "restored.img"
    start = time.monotonic()
    sh(*TWOFOLD, "image", "restore", store, "vol", "--to", out)
    restore_s = time.monotonic() - start
    out.unlink()
    read_s = mounted_time(store, point, ["cat", str(point / "volume" / "big.bin")])
    code = ("import os, sys, time; t = time.monotonic(); n = len(os.listdir(sys.argv[1])); "
            "print(n, time.monotonic() - t)")
    list_s = mounted_time(store, point, [sys.executable, "-c", code,
                                         str(point / "volume" / "many")])
    ls_l_s = mounted_time(store, point, ["ls", "-l", str(point / "volume" / "many")])

    size = args.size * MB
    restore_rate = used / restore_s / MB
    read_rate = size / read_s / MB
    ratio = read_rate / restore_rate
    print(f"tree: {args.size} MB file + {args.entries:,} small files ({used / MB:.0f} MB used)")
    print(f"restore:          {restore_s:6.2f} s  {restore_rate:7.1f} MB/s of used bytes")
    print(f"read via mount:   {read_s:6.2f} s  {read_rate:7.1f} MB/s   "
          f"ratio {ratio:.2f}x (goal >= 0.5x: {'PASS' if ratio >= 0.5 else 'MISS'})")
    print(f"list {args.entries:,} cold: {list_s:6.2f} s (goal <= 1 s: "
          f"{'PASS' if list_s <= 1 else 'MISS'}; includes starting a Python)")
    print(f"ls -l {args.entries:,} cold: {ls_l_s:6.2f} s")
    print(load_text())
    if not args.workdir:
        sh("rm", "-rf", work)


if __name__ == "__main__":
    os.umask(0o022)
    main()
