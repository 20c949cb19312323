"""Time twofold images against `partclone.ext4 -c | zstd -3 -T2` and `restic backup --stdin`.

Corpus `usr` (default): a --size ext4 image file filled with about --fill of real files
copied from /usr (root: loop mount); after the first image about 5 % of the used data is
changed (files removed, replaced and added). Corpus `debian`: the ext4 root partition of a
real Debian 12 system disk (bench/debian_disk.py, built once and cached; a copy on a loop
device); the change unpacks packages from the host's apt cache and adds new files. Both
tools image the source and restore it; then the changed source is imaged again, beside
restic. The page cache is dropped before each measurement. Prints the commands, the load,
times, sizes and ratios against the goals of issue 20 (issue 4's for what the second image
stores); --limits also the machine's limits and floors (bench/image_limits.py). twofold
runs HEAD's src/, exported and byte-compiled (common.pin_source; --no-pin: working tree).
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
from common import code_under_test, load_text

ENV: dict[str, str] | None = None  # twofold's environment (the pinned code, its state)

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


def alternate(tf: str, img: str, work: Path, baseline: str, turns: int) -> None:
    """Full creates into fresh stores by this twofold and by the one in `baseline`, in
    turns, each beside a partclone+zstd run; prints each turn's two ratios."""
    env = {**(ENV or os.environ), "PYTHONPATH": os.path.abspath(baseline)}
    print("turn  partclone s  this s  baseline s  this/pc  baseline/pc  this/baseline"
          "  this cpu s  baseline cpu s  cpu this/baseline")
    for turn in range(1, turns + 1):
        t_pc, _ = timed(f"partclone.ext4 -c -s {img} -o - 2>/dev/null | zstd -3 -T2 -q -f "
                        f"-o {work}/pc1.zst")
        took, cpu = {}, {}
        for who, run_env in (("this", ENV), ("baseline", env)):
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


def usr_source(args: argparse.Namespace, work: Path, rng: random.Random) -> tuple[str, int, str]:
    """A --size ext4 image file with --fill MiB copied from /usr: (path, size, what)."""
    img, mnt = work / "ext4.img", work / "mnt"
    with open(img, "wb") as f:
        f.truncate(args.size * MB)
    sh(f"mkfs.ext4 -q -F {img}")
    sh(f"mount -o loop {img} {mnt}")
    try:
        filled = fill(mnt, args.fill * MB, rng)
    finally:
        sh(f"umount {mnt}")
    return str(img), args.size * MB, (f"ext4 image file of {args.size} MiB, "
                                      f"{filled / MB:.0f} MiB of files from /usr")


def debian_source(args: argparse.Namespace, work: Path, loops: list[str]
                  ) -> tuple[str, int, str]:
    """The root partition of a copy of the Debian disk, on a loop device."""
    from debian_disk import attach, build_disk

    disk = build_disk(args.suite)
    _copy, dev, part = attach(disk, work)
    loops.append(dev)
    size = int(sh(f"blockdev --getsize64 {part}").stdout)
    return part, size, (f"ext4 root partition ({size / MB:.0f} MiB) of a Debian {args.suite} "
                        f"system disk, {part} on a copy of {disk}")


def change_source(args: argparse.Namespace, src: str, mnt: Path, rng: random.Random) -> str:
    """Change the source's files as the corpus does; what was changed."""
    sh(f"mount {'-o loop ' if os.path.isfile(src) else ''}{src} {mnt}")
    try:
        if args.corpus == "debian":
            from debian_disk import change as debian_change

            return debian_change(mnt, args.seed, args.deb_mib, args.new_mib)
        return f"changed {change(mnt, 0.05, rng) / MB:.0f} MiB of files"
    finally:
        sh(f"umount {mnt}")


def commands(tf: str, src: str, work: Path) -> list[str]:
    """The commands timed, as they run."""
    return [f"partclone.ext4 -c -s {src} -o - 2>/dev/null | zstd -3 -T2 -q -f -o {work}/pc1.zst",
            f"zstd -dc {work}/pc1.zst | partclone.ext4 -r -s - -O {work}/restored.img "
            "2>/dev/null", f"{tf} create|restore STORE {src}|one NAME|{work}/restored.img "
            "(shim: twofold.image.create / restore, zstd 3; restore reads back)",
            f"restic backup -q --stdin --stdin-filename disk.img < {src}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", choices=["usr", "debian"], default="usr",
                    help="usr: files copied from /usr (default); debian: a real Debian disk")
    ap.add_argument("--size", type=int, default=2048, help="usr: ext4 size in MiB (2048)")
    ap.add_argument("--fill", type=int, default=1100, help="usr: MiB of files to copy (1100)")
    ap.add_argument("--suite", default="bookworm", help="debian: the suite (bookworm)")
    ap.add_argument("--deb-mib", type=int, default=15,
                    help="debian change: MiB of .deb files to unpack (15)")
    ap.add_argument("--new-mib", type=int, default=30,
                    help="debian change: MiB of new files (30)")
    ap.add_argument("--limits", action="store_true",
                    help="also measure read, zstd, BLAKE3 and write speeds and the floors")
    ap.add_argument("--workdir", default=None, help="where to work (a temp folder)")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--no-pin", action="store_true", help="run the working tree's src/")
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
        raise SystemExit("needs root (loop devices, mounts, dropping the page cache)")
    tools = ["partclone.ext4", "zstd"] + ([] if args.full_only else ["restic"])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:  # said before minutes of set-up, not after
        packages = " ".join("partclone" if t.startswith("partclone") else t for t in missing)
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install {packages}"
                         " (or --full-only to leave restic out)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tf-img-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "mnt").mkdir(exist_ok=True)
    loops: list[str] = []
    try:
        run(args, work, loops)
    finally:
        subprocess.run(["umount", str(work / "mnt")], capture_output=True, check=False)
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, work: Path, loops: list[str]) -> None:
    """Everything main sets up for."""
    global ENV
    rng = random.Random(args.seed)
    ENV, version = code_under_test(str(work), not args.no_pin)
    if args.corpus == "debian":
        src, size, what = debian_source(args, work, loops)
    else:
        src, size, what = usr_source(args, work, rng)
    shim = work / "shim.py"
    shim.write_text(SHIM)
    tf = f"{sys.executable} {shim}"
    print(f"twofold: {version}\nsource: {what}\ncommands (page cache dropped before each):")
    for cmd in commands(tf, src, work):
        print(f"  {cmd}")
    print(f"at the start: {load_text()}", flush=True)
    store = work / "drive"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    if args.chunk_kib:
        from twofold.blobs.objects import LocalObjects
        from twofold.chunks.chunkstore import ChunkStore

        ChunkStore(LocalObjects(store / "twofold-images"), chunk_size=args.chunk_kib << 10).init()
    limits = None
    if args.limits:
        from image_limits import measure

        limits = measure(src, work, ENV)
    rows: list[tuple[str, float, int]] = []

    t_pc, _ = timed(commands(tf, src, work)[0])
    rows.append(("partclone+zstd -3 full", t_pc, du(work / "pc1.zst")))
    t_tf, out = timed(f"{tf} create {store} {src} one", env=ENV)
    full = json.loads(out)
    rows.append(("twofold full", t_tf, full["stored_new_bytes"]))

    restored = work / "restored.img"
    with open(restored, "wb") as f:
        f.truncate(size)
    t_pcr, _ = timed(commands(tf, src, work)[1])
    rows.append(("partclone restore", t_pcr, 0))
    t0 = time.monotonic()
    os.sync()  # partclone leaves its writes in the page cache; twofold fsyncs
    rows.append(("partclone restore + sync", t_pcr + time.monotonic() - t0, 0))
    restored.unlink()
    t_tfr, _ = timed(f"{tf} restore {store} one {restored}", env=ENV)
    rows.append(("twofold restore", t_tfr, 0))
    fsck = subprocess.run(["e2fsck", "-fn", str(restored)], capture_output=True, check=False)
    restored.unlink()
    fsck_text = f"restored ext4 fsck: {'clean' if fsck.returncode == 0 else 'NOT clean'}"
    pc_size = du(work / "pc1.zst")
    if args.full_only or args.baseline_src:
        print_rows(rows)
        print(f"  full time / partclone+zstd {t_tf / t_pc:6.2f}   full size / partclone+zstd "
              f"{full['stored_new_bytes'] / pc_size:6.3f}   {fsck_text}")
        if limits:
            from image_limits import report

            report(limits, dict(r[:2] for r in rows[:2]), dict(r[:2] for r in rows[2:]))
        if args.baseline_src:
            alternate(tf, src, work, args.baseline_src, args.turns)
        print(f"at the end: {load_text()}")
        return

    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(work / "restic")}
    shutil.rmtree(work / "restic", ignore_errors=True)
    sh("restic init -q", env=env)
    timed(commands(tf, src, work)[3], env=env)
    restic1 = du(work / "restic")
    state1 = work / "state1.img"
    sh(f"cp --sparse=always {src} {state1}")
    changed = change_source(args, src, work / "mnt", rng)
    t_tf2, out = timed(f"{tf} create {store} {src} two", env=ENV)
    second = json.loads(out)
    rows.append(("twofold second", t_tf2, second["stored_new_bytes"]))
    t_r2, _ = timed(commands(tf, src, work)[3], env=env)
    rows.append(("restic --stdin second", t_r2, du(work / "restic") - restic1))
    delta = changed_blocks_zstd(state1, Path(src))
    state1.unlink()

    chunk = json.loads((store / "twofold-images/store.json").read_text())["chunk_size"]
    print(f"chunk size {chunk >> 10} KiB; used {full['used_bytes'] / MB:.0f} MiB; {changed}; "
          f"changed blocks zstd -3: {delta / MB:.1f} MiB; cpus {os.cpu_count()}")
    print_rows(rows)
    goals = [
        ("full time ≤ 0.4× partclone+zstd", t_tf / t_pc, 0.4),
        ("full size ≤ 1.0× partclone+zstd", full["stored_new_bytes"] / pc_size, 1.0),
        ("second time ≤ 0.15× restic", t_tf2 / t_r2, 0.15),
        ("second stores ≤ 1.25× changed blocks zstd", second["stored_new_bytes"] / delta,
         1.25),
        ("restore ≤ 0.4× partclone restore", t_tfr / t_pcr, 0.4),
    ]
    for text, value, goal in goals:
        print(f"  {text:45} {value:6.2f}  {'met' if value <= goal else 'NOT met'}")
    print(f"  {fsck_text}")
    if limits:
        from image_limits import report

        report(limits, dict(r[:2] for r in rows[:2]), dict(r[:2] for r in rows[2:5]))
    print(f"at the end: {load_text()}")


if __name__ == "__main__":
    sys.exit(main())
