"""Time `twofold image export --format qcow2` against `twofold image restore` to a file
followed by `qemu-img convert -O qcow2` (issue 19), on the same image in one run.

A --size MB GPT disk file holds one ext4 partition filled (mkfs.ext4 -d, no root needed)
with about --fill MB of real files copied from /usr; it is imaged once. Then, --turns
times in alternation with the page cache dropped before each: the export, and the
restore + convert (the restore as a user runs it, reading back what it wrote, and also
with --no-readback for the stricter figure). Prints the median times, the qcow2 files'
sizes (bytes taken on the drive), the ratios and the goals (<= 0.6x time, <= 1.05x size),
and checks that both qcow2 files hold the same disk (qemu-img compare).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import code_under_test, drop_caches, load_text, machine_facts, verdict
from image_vs_partclone import fill

MB = 1 << 20


def run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Run a command (failing loudly); its seconds."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took


def make_disk(work: Path, size_mb: int, fill_mb: int) -> tuple[Path, int]:
    """A GPT disk with one ext4 partition holding about fill_mb of files; (disk, bytes)."""
    copied = fill(work, fill_mb * MB, random.Random(1))  # into work/data
    tree = work / "data"
    part = work / "part.img"
    with open(part, "wb") as f:
        f.truncate((size_mb - 2) * MB)
    run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(part)])
    shutil.rmtree(tree)
    disk = work / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(size_mb * MB)
    subprocess.run(["sfdisk", "-q", str(disk)], input="label: gpt\nstart=2048, type=linux\n",
                   text=True, check=True, capture_output=True)
    run(["dd", f"if={part}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc,sparse",
         "status=none"])
    part.unlink()
    return disk, copied


def taken(path: Path) -> int:
    """Bytes a file takes on its drive."""
    return path.stat().st_blocks * 512


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="disk size, MB")
    ap.add_argument("--fill", type=int, default=600, help="files on it, MB")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="where to put the files (default: /var/tmp)")
    ap.add_argument("--no-pin", action="store_true", help="run the working tree's src/")
    a = ap.parse_args()
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise SystemExit("qemu-img is missing (Debian package qemu-utils)")
    with tempfile.TemporaryDirectory(prefix="twofold-bench-export-",
                                     dir=a.workdir or "/var/tmp") as tmp:
        work = Path(tmp)
        env, version = code_under_test(tmp, not a.no_pin)
        cli = os.path.join(os.path.dirname(sys.executable), "twofold")
        for line in machine_facts(tmp, version):
            print(line)
        print(f"qemu-img: {subprocess.run([qemu_img, '--version'], capture_output=True, text=True, check=False).stdout.splitlines()[0]}")  # noqa: E501
        disk, copied = make_disk(work, a.size, a.fill)
        print(f"disk: {a.size} MB GPT, one ext4 partition with {copied / 1e6:.0f} MB of "
              "files from /usr")
        store = work / "store"
        store.mkdir()
        run([cli, "image", "create", str(disk), "--to", str(store), "--name", "sys",
             "--allow-system-disk"], env)
        disk.unlink()
        times: dict[str, list[float]] = {"export": [], "restore": [], "convert": [],
                                         "restore-nrb": [], "convert-nrb": []}
        sizes: dict[str, int] = {}
        print(f"before: {load_text()}")
        for turn in range(a.turns):
            for what in ("export", "plain", "nrb"):
                out = work / f"{what}.qcow2"
                raw = work / "restored.raw"
                drop_caches()
                if what == "export":
                    times["export"].append(run(
                        [cli, "image", "export", str(store), "sys", "--format", "qcow2",
                         "--to", str(out)], env))
                else:
                    suffix = "" if what == "plain" else "-nrb"
                    times["restore" + suffix].append(run(
                        [cli, "image", "restore", str(store), "sys", "--to", str(raw),
                         *([] if what == "plain" else ["--no-readback"])], env))
                    times["convert" + suffix].append(run(
                        [qemu_img, "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)]))
                    raw.unlink()
                sizes[what] = taken(out)
                if turn < a.turns - 1:
                    out.unlink()
            print(f"turn {turn + 1}: export {times['export'][-1]:.2f} s, restore + convert "
                  f"{times['restore'][-1] + times['convert'][-1]:.2f} s, with --no-readback "
                  f"{times['restore-nrb'][-1] + times['convert-nrb'][-1]:.2f} s")
        same = subprocess.run([qemu_img, "compare", str(work / "export.qcow2"),
                               str(work / "plain.qcow2")], capture_output=True, text=True,
                              check=False)
        print(f"after: {load_text()}")
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["restore"] + med["convert"]
        strict = med["restore-nrb"] + med["convert-nrb"]
        print(f"\nmedians of {a.turns} turns (page cache dropped before each command):")
        print(f"  export --format qcow2       {med['export']:7.2f} s  "
              f"{sizes['export'] / 1e6:8.1f} MB")
        print(f"  restore + qemu-img convert  {base:7.2f} s  {sizes['plain'] / 1e6:8.1f} MB  "
              f"(restore {med['restore']:.2f} s, convert {med['convert']:.2f} s)")
        print(f"  same, restore --no-readback {strict:7.2f} s  "
              f"(restore {med['restore-nrb']:.2f} s, convert {med['convert-nrb']:.2f} s)")
        t_ratio, s_ratio = med["export"] / base, sizes["export"] / sizes["plain"]
        print(f"time ratio {t_ratio:.2f}x (goal <= 0.6x: {verdict(t_ratio <= 0.6)}); against "
              f"--no-readback {med['export'] / strict:.2f}x")
        print(f"size ratio {s_ratio:.3f}x (goal <= 1.05x: {verdict(s_ratio <= 1.05)})")
        print(f"qemu-img compare of the two qcow2 files: {same.stdout.strip() or same.stderr}")


if __name__ == "__main__":
    main()
