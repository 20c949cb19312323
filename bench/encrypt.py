"""Time `twofold image create` and `image restore` of the same ext4 disk into a plain and
into an encrypted store (issue 19: encrypted ≤ 1.15× plain, both ways).

An ext4 file system of --size MiB is made by `mkfs.ext4 -d` from about --fill MiB of real
files copied from /usr (no root needed), then imaged with the CLI into a fresh store,
plain and `--encrypt` (TWOFOLD_PASSPHRASE set; Argon2id's unlock counts), alternating
which goes first, --turns times; each image is restored to a fresh file (read back and
checked, as by default), after one untimed create. The page cache is dropped before each
run where allowed.
Prints every turn (seconds and CPU seconds: the CPU figures suffer less from a loaded
machine), the medians and the ratios beside the goal.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    MB,
    code_under_test,
    drop_caches,
    load_text,
    machine_facts,
    verdict,
)
from image_vs_partclone import fill

GOAL = 1.15


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Drop caches, run `cmd`, return its seconds and CPU seconds (exit on failure)."""
    drop_caches()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=1024, help="ext4 size in MiB (1024)")
    ap.add_argument("--fill", type=int, default=600, help="MiB of files to copy (600)")
    ap.add_argument("--turns", type=int, default=3, help="alternating turns (3)")
    ap.add_argument("--workdir", default=None, help="where to work (a temp folder)")
    ap.add_argument("--no-pin", action="store_true", help="run the working tree's src/")
    a = ap.parse_args(argv)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="twofold-bench-encrypt-"))
    work.mkdir(parents=True, exist_ok=True)
    env, version = code_under_test(str(work), not a.no_pin)
    assert env is not None
    env = {**env, "TWOFOLD_PASSPHRASE": "bench passphrase, not a secret"}
    tf = [os.path.join(os.path.dirname(sys.executable), "twofold"), "image"]
    print("\n".join(machine_facts(str(work), version)))
    tree, img = work / "tree", work / "disk.img"
    copied = fill(tree, a.fill * MB, random.Random(1))  # into tree/data
    with open(img, "wb") as f:
        f.truncate(a.size * MB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(img)], check=True)
    shutil.rmtree(tree)
    print(f"source: ext4 of {a.size} MiB holding {copied / 1e6:.0f} MB of /usr files")
    print(f"before: {load_text()}")
    times: dict[str, dict[str, list[tuple[float, float]]]] = {
        mode: {"create": [], "restore": []} for mode in ("plain", "encrypted")}
    warm = work / "store-warm-up"  # not timed: the first run pays for cold imports
    warm.mkdir()
    timed([*tf, "create", str(img), "--to", str(warm), "--name", "one", "--json"], env)
    shutil.rmtree(warm)
    print("turn  mode       create s  (cpu s)  restore s  (cpu s)")
    for turn in range(1, a.turns + 1):
        modes = ["plain", "encrypted"] if turn % 2 else ["encrypted", "plain"]
        for mode in modes:
            store, out = work / f"store-{mode}", work / "out.img"
            shutil.rmtree(store, ignore_errors=True)
            store.mkdir()
            out.unlink(missing_ok=True)
            extra = ["--encrypt"] if mode == "encrypted" else []
            c = timed([*tf, "create", str(img), "--to", str(store), "--name", "one",
                       "--json", "--new-drive", *extra], env)
            r = timed([*tf, "restore", str(store), "one", "--to", str(out), "--json"], env)
            times[mode]["create"].append(c)
            times[mode]["restore"].append(r)
            print(f"{turn:4}  {mode:9}  {c[0]:8.2f}  {c[1]:7.2f}  {r[0]:9.2f}  {r[1]:7.2f}",
                  flush=True)
            shutil.rmtree(store)
            out.unlink()
    print(f"after: {load_text()}")
    ok = True
    for op in ("create", "restore"):
        plain, sealed = (statistics.median(t for t, _ in times[m][op])
                         for m in ("plain", "encrypted"))
        cpu_plain, cpu_sealed = (statistics.median(c for _, c in times[m][op])
                                 for m in ("plain", "encrypted"))
        ratio = sealed / plain
        ok &= ratio <= GOAL
        print(f"{op:8} median plain {plain:6.2f} s  encrypted {sealed:6.2f} s  "
              f"ratio {ratio:.3f}  (goal <= {GOAL})  {verdict(ratio <= GOAL)};  CPU "
              f"{cpu_plain:.2f} s vs {cpu_sealed:.2f} s, ratio {cpu_sealed / cpu_plain:.3f}")
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
