"""Time twofold images against `partclone.ext4 -c | zstd -3 -T2` and `restic backup --stdin`.

A --size ext4 image file is filled with about --fill of real files copied from /usr (root:
loop mount), imaged by both tools and restored by both; then about 5 % of the used data is
changed (files removed, replaced and added) and imaged again. The page cache is dropped
before each measurement. Prints times, sizes and ratios, and the goals of issue 4.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard

MB = 1 << 20
BLOCK = 4096

SHIM = """
import json, sys
from twofold.core.progress import NullProgress
from twofold.jobs.clock import SystemClock
op, store = sys.argv[1], sys.argv[2]
if op == "create":
    from twofold.image.create import create
    r = create(sys.argv[3], store, sys.argv[4], 3, None, False, NullProgress(), SystemClock())
    print(json.dumps({"image": r.name, **r.as_dict()}))
else:
    from twofold.image.restore import restore
    restore(store, sys.argv[3], sys.argv[4], None, NullProgress(), SystemClock())
"""


def sh(cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a shell command, failing loudly."""
    return subprocess.run(cmd, shell=True, check=True, text=True, capture_output=True,
                          **kw)  # type: ignore[call-overload,no-any-return]


def timed(cmd: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Drop caches, run, return (seconds, stdout)."""
    drop_caches()
    start = time.monotonic()
    proc = subprocess.run(cmd, shell=True, text=True, capture_output=True, env=env,
                          check=False)
    took = time.monotonic() - start
    if proc.returncode:
        raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took, proc.stdout


def drop_caches() -> None:
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def du(path: Path) -> int:
    """Bytes of the files under `path` (or the file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fill(mnt: Path, want: int, rng: random.Random) -> int:
    """Copy regular files from /usr/lib and /usr/share into `mnt` until `want` bytes."""
    copied = 0
    for base in ("/usr/lib", "/usr/share"):
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                src = os.path.join(dirpath, f)
                if not os.path.isfile(src) or os.path.islink(src):
                    continue
                dst = mnt / "data" / os.path.relpath(src, "/usr")
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(src, dst)
                except OSError:
                    continue
                copied += dst.stat().st_size
                if copied >= want:
                    return copied
    return copied


def change(mnt: Path, fraction: float, rng: random.Random) -> int:
    """Remove, rewrite and add files worth about `fraction` of the used data."""
    files = sorted(p for p in (mnt / "data").rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    budget, done = int(total * fraction), 0
    rng.shuffle(files)
    for i, p in enumerate(files):
        if done >= budget:
            break
        n = p.stat().st_size
        if i % 3 == 0:
            p.unlink()
        elif i % 3 == 1:
            data = bytearray(p.read_bytes())
            for _ in range(max(1, len(data) // 4096)):
                if data:
                    data[rng.randrange(len(data))] ^= 0xFF
            p.write_bytes(bytes(data))
        else:
            shutil.copyfile(p, p.with_name(p.name + ".new"))
        done += n
    return done


def changed_blocks_zstd(a: Path, b: Path) -> int:
    """zstd -3 size of the 4 KiB blocks that differ between two images."""
    cctx = zstandard.ZstdCompressor(level=3)
    out = bytearray()
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(64 * MB), fb.read(64 * MB)
            if not x and not y:
                break
            for off in range(0, max(len(x), len(y)), BLOCK):
                bx, by = x[off:off + BLOCK], y[off:off + BLOCK]
                if bx != by:
                    out += by
    return len(cctx.compress(bytes(out)))


def print_rows(rows: list[tuple[str, float, int]]) -> None:
    """The table of what was timed."""
    print(f"{'what':26} {'seconds':>8} {'MB stored':>10}")
    for name, secs, size in rows:
        print(f"{name:26} {secs:8.2f} {size / 1e6:10.1f}")


def alternate(tf: str, img: Path, work: Path, baseline: str, turns: int) -> None:
    """Full creates into fresh stores by this twofold and by the one in `baseline`, in
    turns, each beside a partclone+zstd run; prints each turn's two ratios."""
    env = {**os.environ, "PYTHONPATH": os.path.abspath(baseline)}
    print("turn  partclone s  this s  baseline s  this/pc  baseline/pc  this/baseline"
          "  this cpu s  baseline cpu s  cpu this/baseline")
    for turn in range(1, turns + 1):
        t_pc, _ = timed(f"partclone.ext4 -c -s {img} -o - 2>/dev/null | zstd -3 -T2 -q -f "
                        f"-o {work}/pc1.zst")
        took, cpu = {}, {}
        for who, run_env in (("this", None), ("baseline", env)):
            store = work / f"drive-{who}"
            shutil.rmtree(store, ignore_errors=True)
            store.mkdir()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            took[who], _ = timed(f"{tf} create {store} {img} one", env=run_env)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[who] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            shutil.rmtree(store, ignore_errors=True)
        print(f"{turn:4}  {t_pc:11.2f}  {took['this']:6.2f}  {took['baseline']:10.2f}  "
              f"{took['this'] / t_pc:7.2f}  {took['baseline'] / t_pc:11.2f}  "
              f"{took['this'] / took['baseline']:13.2f}  {cpu['this']:10.2f}  "
              f"{cpu['baseline']:14.2f}  {cpu['this'] / cpu['baseline']:17.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=2048, help="ext4 size in MiB (2048)")
    ap.add_argument("--fill", type=int, default=1100, help="MiB of files to copy (1100)")
    ap.add_argument("--workdir", default=None, help="where to work (a temp folder)")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--chunk-kib", type=int, default=0,
                    help="chunk size of a new store in KiB (the engine's default)")
    ap.add_argument("--full-only", action="store_true",
                    help="stop after the full image and its restore (no restic needed)")
    ap.add_argument("--baseline-src", default=None,
                    help="also time full creates by the twofold whose src/ folder this is "
                         "(e.g. `git archive main` unpacked), alternating with this one")
    ap.add_argument("--turns", type=int, default=3, help="alternating turns (3)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (loop mount to fill the ext4 image)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tf-img-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    img, mnt = work / "ext4.img", work / "mnt"
    mnt.mkdir(exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(args.size * MB)
    sh(f"mkfs.ext4 -q -F {img}")
    sh(f"mount -o loop {img} {mnt}")
    try:
        filled = fill(mnt, args.fill * MB, rng)
    finally:
        sh(f"umount {mnt}")
    shim = work / "shim.py"
    shim.write_text(SHIM)
    tf = f"{sys.executable} {shim}"
    store = work / "drive"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    if args.chunk_kib:
        from twofold.blobs.objects import LocalObjects
        from twofold.chunks.chunkstore import ChunkStore

        ChunkStore(LocalObjects(store / "twofold-images"), chunk_size=args.chunk_kib << 10).init()
    rows: list[tuple[str, float, int]] = []

    t_pc, _ = timed(f"partclone.ext4 -c -s {img} -o - 2>/dev/null | zstd -3 -T2 -q -f "
                    f"-o {work}/pc1.zst")
    rows.append(("partclone+zstd -3 full", t_pc, du(work / "pc1.zst")))
    t_tf, out = timed(f"{tf} create {store} {img} one")
    full = json.loads(out)
    rows.append(("twofold full", t_tf, full["stored_new_bytes"]))

    restored = work / "restored.img"
    with open(restored, "wb") as f:
        f.truncate(args.size * MB)
    t_pcr, _ = timed(f"zstd -dc {work}/pc1.zst | partclone.ext4 -r -s - -O {restored} "
                     "2>/dev/null")
    rows.append(("partclone restore", t_pcr, 0))
    restored.unlink()
    t_tfr, _ = timed(f"{tf} restore {store} one {restored}")
    rows.append(("twofold restore", t_tfr, 0))
    fsck = subprocess.run(["e2fsck", "-fn", str(restored)], capture_output=True, check=False)
    restored.unlink()
    if args.full_only or args.baseline_src:
        print_rows(rows)
        print(f"  full time / partclone+zstd {t_tf / t_pc:6.2f}   full size / partclone+zstd "
              f"{full['stored_new_bytes'] / du(work / 'pc1.zst'):6.3f}   "
              f"restored ext4 fsck: {'clean' if fsck.returncode == 0 else 'NOT clean'}")
        if args.baseline_src:
            alternate(tf, img, work, args.baseline_src, args.turns)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        return 0

    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(work / "restic")}
    shutil.rmtree(work / "restic", ignore_errors=True)
    sh("restic init -q", env=env)
    timed(f"restic backup -q --stdin --stdin-filename disk.img < {img}", env=env)
    restic1 = du(work / "restic")
    state1 = work / "state1.img"
    shutil.copyfile(img, state1)

    sh(f"mount -o loop {img} {mnt}")
    try:
        changed = change(mnt, 0.05, rng)
    finally:
        sh(f"umount {mnt}")
    t_tf2, out = timed(f"{tf} create {store} {img} two")
    second = json.loads(out)
    rows.append(("twofold second", t_tf2, second["stored_new_bytes"]))
    t_r2, _ = timed(f"restic backup -q --stdin --stdin-filename disk.img < {img}", env=env)
    rows.append(("restic --stdin second", t_r2, du(work / "restic") - restic1))
    delta = changed_blocks_zstd(state1, img)
    state1.unlink()

    chunk = json.loads((store / "twofold-images/store.json").read_text())["chunk_size"]
    print(f"chunk size {chunk >> 10} KiB; ext4 {args.size} MiB, "
          f"{filled / MB:.0f} MiB of files from /usr, "
          f"used {full['used_bytes'] / MB:.0f} MiB; changed {changed / MB:.0f} MiB of files, "
          f"changed blocks zstd -3: {delta / MB:.1f} MiB; cpus {os.cpu_count()}")
    print_rows(rows)
    goals = [
        ("full time ≤ 0.6× partclone+zstd", t_tf / t_pc, 0.6),
        ("full size ≤ 1.02× partclone+zstd", full["stored_new_bytes"] / du(work / "pc1.zst"),
         1.02),
        ("second time ≤ 0.3× restic", t_tf2 / t_r2, 0.3),
        ("second stores ≤ 1.25× changed blocks zstd", second["stored_new_bytes"] / delta,
         1.25),
        ("restore ≤ 0.8× partclone restore", t_tfr / t_pcr, 0.8),
    ]
    for text, value, goal in goals:
        print(f"  {text:45} {value:6.2f}  {'met' if value <= goal else 'NOT met'}")
    print(f"  restored ext4 fsck: {'clean' if fsck.returncode == 0 else 'NOT clean'}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
