"""Time a live (file-level) twofold image of a mounted read-write ext4 against
`fsarchiver savefs -A -j2 -Z3` of the same mounted file system, then the second image
after a change (also against `restic backup` of the mounted tree), and a restore onto a
smaller disk against `fsarchiver restfs` (root; Debian packages fsarchiver, restic).

A --size GPT disk file with one ext4 partition is filled with about --fill MB of real
files copied from /usr and mounted read-write; twofold images the disk (the partition is
taken at file level), fsarchiver saves the partition. Then --change MB of new data (1 MB
files, half random, half text) are added and both run again (twofold into the same
store: only the change is stored; fsarchiver saves everything again). Last, each restores
onto a disk halfway between the data's size and the source's (twofold lays the partition
out again; fsarchiver restores into a partition of that size). The page cache is dropped
before each run. Prints times (and the CPU seconds, user + system, of each command),
sizes and ratios against the goals of issue 16, and the load. twofold runs HEAD's src/,
exported and byte-compiled (bench/common.py, pin_source; --no-pin: the working tree).

--corpus debian: the source is instead a copy of the real Debian system disk of
bench/debian_disk.py (BIOS boot partition, ext4 root with about 1 GB used), its root
mounted read-write, and the change is that module's: packages unpacked from the host's apt
cache (--deb-mib of .deb files) and --change MB of new files. The compressed change is the
zstd -3 size of every file whose ctime is after the first images, in 1 MiB pieces.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard
from common import code_under_test, load_text, partition
from image_vs_partclone import drop_caches, du

SOURCES = ("/usr/bin", "/usr/lib/python3", "/usr/share/doc", "/usr/include", "/usr/share/man",
           "/usr/share/locale", "/usr/lib/x86_64-linux-gnu")
"""An equal share from each: a mix like a system's (many small files, some large ones)."""


def fill(top: Path, want: int) -> int:
    """Copy files and symlinks from SOURCES (as they are) into `top`: about `want` bytes."""
    copied = 0
    for n, base in enumerate(SOURCES, 1):
        quota = want * n // len(SOURCES)
        for dirpath, _dirs, files in os.walk(base):
            dest = top / os.path.relpath(dirpath, "/")
            for name in sorted(files):
                src, dst = os.path.join(dirpath, name), dest / name
                if dst.exists() or dst.is_symlink():
                    continue
                dest.mkdir(parents=True, exist_ok=True)
                try:
                    if os.path.islink(src):
                        os.symlink(os.readlink(src), dst)
                        continue
                    shutil.copy2(src, dst)
                except OSError:
                    continue
                copied += dst.stat().st_size
                if copied >= quota:
                    break
            if copied >= quota:
                break
    return copied

MB = 1 << 20


ENV: dict[str, str] | None = None  # twofold's environment (the pinned code, its state)
CPU: dict[str, float] = {}  # CPU seconds (user + system) of each timed command, by label


def sh(*cmd: str | Path, stdin: str | None = None) -> str:
    """Run, failing loudly; stdout."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, input=stdin,
                          check=False, env={**os.environ, **(ENV or {})})
    if proc.returncode:
        raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def timed(label: str, *cmd: str | Path) -> float:
    """Drop caches, run, seconds (its CPU seconds into CPU[label])."""
    drop_caches()
    before = os.times()
    start = time.monotonic()
    sh(*cmd)
    took = time.monotonic() - start
    after = os.times()
    CPU[label] = after.children_user - before.children_user + \
        after.children_system - before.children_system
    return took


def stored(store: Path) -> int:
    """Bytes of a twofold store's objects (its .reserve file, kept free for deletes on a
    full drive, is not image data)."""
    return du(store) - du(store / "twofold-images" / ".reserve") \
        if (store / "twofold-images" / ".reserve").exists() else du(store)


def changed_since(top: Path, since_ns: int) -> tuple[int, int]:
    """(bytes, zstd -3 bytes in 1 MiB pieces) of the regular files under `top` whose ctime
    is after `since_ns` (new or written since; unpacked files keep their packages' mtimes)."""
    data = bytearray()
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_ctime_ns > since_ns and os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    data += f.read()
    zstd = zstandard.ZstdCompressor(level=3)
    return len(data), sum(len(zstd.compress(bytes(data[i:i + MB])))
                          for i in range(0, len(data), MB))


def usr_change(mnt: Path, mib: int) -> str:
    """`mib` new 1 MiB files, half random, half text (compressible)."""
    new = mnt / "change"
    new.mkdir()
    rng = __import__("random").Random(2)
    for i in range(mib):
        (new / f"blob{i}.bin").write_bytes(rng.randbytes(MB // 2) + b"".join(
            b"log line %d of file %d\n" % (n, i) for n in range(MB // 48))[:MB // 2])
    return f"{mib} MB of new files"


def disk(path: Path, size: int) -> tuple[str, str]:
    """A GPT disk file with one Linux partition on a loop device: (disk dev, partition)."""
    with open(path, "wb") as f:
        f.truncate(size)
    sh("sfdisk", "-q", path, stdin="label: gpt\n,,L\n")
    dev = sh("losetup", "-f", "-P", "--show", path).strip()
    return dev, partition(dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="disk MiB")
    ap.add_argument("--fill", type=int, default=800, help="MB of files")
    ap.add_argument("--change", type=int, default=30, help="MB of new files")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--no-pin", action="store_true", help="run the working tree's src/")
    ap.add_argument("--corpus", choices=("usr", "debian"), default="usr",
                    help="files copied from /usr (--size, --fill), or the real Debian disk")
    ap.add_argument("--suite", default="bookworm", help="Debian suite of --corpus debian")
    ap.add_argument("--deb-mib", type=int, default=15,
                    help="MiB of .deb files unpacked by the change of --corpus debian")
    args = ap.parse_args()
    global ENV
    twofold = str(Path(sys.executable).with_name("twofold"))
    work = Path(tempfile.mkdtemp(prefix="live-bench-", dir=args.workdir))
    loops: list[str] = []
    ENV, version = code_under_test(str(work), not args.no_pin)
    print(f"twofold: {version}")
    mnt = work / "mnt"
    try:
        if args.corpus == "debian":
            import debian_disk

            copy, dev_path, part = debian_disk.attach(debian_disk.build_disk(args.suite), work)
            dev, disk_bytes = str(dev_path), copy.stat().st_size
            what = f"the real Debian {args.suite} system of bench/debian_disk.py"
        else:
            dev, part = disk(work / "disk.img", args.size * MB)
            disk_bytes = args.size * MB
            sh("mkfs.ext4", "-q", "-L", "benchroot", part)
        loops.append(dev)
        mnt.mkdir()
        sh("mount", part, mnt)
        if args.corpus != "debian":
            filled = fill(mnt, args.fill * MB)
            what = f"{filled / 1e6:.0f} MB copied from /usr"
        used = int(sh("df", "-B1", "--output=used", mnt).split()[-1])
        store, fsa = work / "store", work / "fsa"
        store.mkdir()
        fsa.mkdir()
        rows = []
        t1 = timed("twofold live image", twofold, "image", "create", dev, "--to", store,
                   "--name", "one", "--allow-system-disk")
        s1 = stored(store)
        f1 = timed("fsarchiver savefs", "fsarchiver", "savefs", "-A", "-j2", "-Z3", "-o",
                   fsa / "one.fsa", part)
        rows += [("twofold live image", t1, s1), ("fsarchiver savefs", f1, du(fsa / "one.fsa"))]
        os.environ.update(RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=str(work / "restic"))
        sh("restic", "init", "-q")
        r1 = timed("restic backup (first)", "restic", "backup", "-q", mnt)
        restic1 = du(work / "restic")
        rows.append(("restic backup (first)", r1, restic1))
        since = time.time_ns()
        time.sleep(0.01)
        if args.corpus == "debian":
            import debian_disk

            changed = debian_disk.change(mnt, 5, args.deb_mib, args.change)
        else:
            changed = usr_change(mnt, args.change)
        added, zstd_change = changed_since(mnt, since)
        t2 = timed("twofold second image", twofold, "image", "create", dev, "--to", store,
                   "--name", "two", "--allow-system-disk")
        s2 = stored(store) - s1
        f2 = timed("fsarchiver second savefs", "fsarchiver", "savefs", "-A", "-j2", "-Z3",
                   "-o", fsa / "two.fsa", part)
        rows += [("twofold second image", t2, s2), ("fsarchiver second savefs", f2,
                                                    du(fsa / "two.fsa"))]
        r2 = timed("restic backup (second)", "restic", "backup", "-q", mnt)
        rows.append(("restic backup (second)", r2, du(work / "restic") - restic1))
        used_now = int(sh("df", "-B1", "--output=used", mnt).split()[-1])
        small = (disk_bytes + int(used_now * 1.1) + 12 * MB) // 2 // MB * MB  # halfway
        target = work / "small.img"
        with open(target, "wb") as f:
            f.truncate(small)
        t3 = timed("twofold restore", twofold, "image", "restore", store, "two", "--to",
                   target, "--no-readback")
        fdev, fpart = disk(work / "fsa-small.img", small)
        loops.append(fdev)
        f3 = timed("fsarchiver restfs", "fsarchiver", "restfs", fsa / "two.fsa",
                   f"id=0,dest={fpart}")
        rows += [("twofold restore", t3, 0), ("fsarchiver restfs", f3, 0)]
        files = sum(len(f) for _d, _s, f in os.walk(mnt))
        print(f"files: {what}, {files:,} files ({used / 1e6:.0f} MB used); change: "
              f"{changed} ({added / 1e6:.0f} MB in new or rewritten files, "
              f"{zstd_change / 1e6:.1f} MB with zstd -3); disk {disk_bytes >> 20} MiB; "
              f"restore onto {small >> 20} MiB")
        print(f"{'what':28} {'seconds':>8} {'CPU s':>6} {'MB stored':>10}")
        for name, secs, size in rows:
            print(f"{name:28} {secs:8.2f} {CPU[name]:6.2f} {size / 1e6:10.1f}")
        print(f"live image time  {t1 / f1:.2f}x fsarchiver (goal <= 0.6), "
              f"size {s1 / du(fsa / 'one.fsa'):.2f}x (goal <= 1.0)")
        print(f"second image     {t2 / f2:.2f}x fsarchiver's (full) savefs time; stored "
              f"{s2 / 1e6:.1f} MB for {added / 1e6:.1f} MB of changed files, "
              f"{s2 / zstd_change:.2f}x their zstd -3 size (goal <= 1.25)")
        print(f"second image     {t2 / r2:.2f}x restic backup's time (goal <= 0.3)")
        print(f"smaller restore  {t3 / f3:.2f}x fsarchiver restfs (goal <= 0.8)")
        print(f"at the end: {load_text()}")
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
        for dev in reversed(loops):
            subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
