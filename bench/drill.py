"""Time `twofold image drill` against `twofold image restore` alone, on a real Debian disk.

The disk (cached) is made from Debian packages with mmdebstrap: systemd, Debian's kernel
and initramfs, GRUB for BIOS on GPT, and ~1 GB used. It is imaged once; then the same
image is restored to a file, and drilled (restore to a scratch copy + boot in QEMU).
Goal (issue 17): drill <= restore + 90 s under TCG. See docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from debian_disk import DISK_MIB, build_disk

GOAL_EXTRA_S = 90.0


def timed(cmd: list[str]) -> tuple[float, str, int]:
    """Seconds, output, exit code."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, done.stdout + done.stderr, done.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("--accel", default="tcg", choices=["auto", "kvm", "tcg"])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--screenshot", default=None, help="save the drill's last screen here")
    args = ap.parse_args()
    twofold = str(Path(sys.executable).parent / "twofold")
    disk = build_disk(args.suite)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        store = Path(tmp) / "drive"
        store.mkdir()
        secs, text, rc = timed([twofold, "image", "create", str(disk), "--to", str(store),
                                "--name", "debian", "--compression", "fast", "--json"])
        assert rc == 0, text
        print(f"image create: {secs:.1f} s")
        restore_s, text, rc = timed([twofold, "image", "restore", str(store), "debian",
                                     "--to", str(Path(tmp) / "restored.raw"), "--no-readback"])
        assert rc == 0, text
        (Path(tmp) / "restored.raw").unlink()
        drill_s, text, rc = timed([twofold, "image", "drill", str(store), "debian",
                                   "--accel", args.accel, "--json", "--timeout", "900"])
        rec = json.loads(text[text.index("{"):])
        if args.screenshot and rec.get("screenshot"):
            shutil.copyfile(store / "twofold-images" / rec["screenshot"]["object"],
                            args.screenshot)
        stages = ", ".join(f"{s['name']} {s['seconds']}" for s in rec["stages"])
        extra = drill_s - restore_s
        one, five, _ = os.getloadavg()
        print(f"disk: {disk} ({DISK_MIB} MiB, ~1 GB used), accel {rec['accel']}, "
              f"{os.cpu_count()} cores, load average {one:.1f} (1 min) {five:.1f} (5 min)")
        print(f"restore alone: {restore_s:.1f} s   drill: {drill_s:.1f} s "
              f"(its restore {rec['restore_seconds']} s, boot {rec['boot_seconds']} s)")
        print(f"stages (s after QEMU start): {stages}")
        print(f"drill - restore = {extra:.1f} s, goal <= {GOAL_EXTRA_S:.0f} s: "
              f"{'PASS' if extra <= GOAL_EXTRA_S and rec['passed'] else 'MISS'}"
              f"{'' if rec['passed'] else ' (drill failed: ' + str(rec['reason']) + ')'}")
    return 0 if rec["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
