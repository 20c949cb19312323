"""What the drive checks cost a backup run: the calls a run makes to know its drive (the
set's drive.json read, the refusal rules, the guard's looks before a batch and before the
run is recorded complete, this computer's memory of the drive read and kept), timed on a
real set made by a real backup run.

    .venv/bin/python bench/drive_check.py [--target DIR] [--repeat 2000]

Prints the time per run in milliseconds (goal of issue 14: at most 5 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from twofold.backup.engine import BackupOptions, backup
from twofold.core.progress import NullProgress
from twofold.fsinfo.volume import DriveGuard, check_drive
from twofold.jobs.clock import SystemClock
from twofold.jobs.state import State
from twofold.sets.target import SetDir

GOAL_MS = 5.0


def one_run(sd: SetDir, state: State, target: str) -> None:
    """The drive work of one no-op run, in the order the run does it."""
    seen = state.seen_drive("backup", target, sd.name)
    check_drive(target, sd.exists(), seen, "the backup set")
    drive = sd.mark_drive()
    guard = DriveGuard(sd.root, drive, target)
    guard.check()  # the one batch of a no-op run
    guard.check(sd.drive)  # before the run is recorded complete
    state.remember_drive("backup", target, sd.name, drive)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", help="a folder on the drive to measure (default: a temp "
                    "folder on the file system of /var/tmp)")
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.target or "/var/tmp") as work:
        os.environ["TWOFOLD_STATE_DIR"] = os.path.join(work, "state")
        target = os.path.join(work, "drive")
        src = os.path.join(work, "src")
        os.makedirs(src)
        with open(os.path.join(src, "a.txt"), "w") as f:
            f.write("a")
        os.makedirs(target)
        backup([src], target, "bench", BackupOptions(), SystemClock(), NullProgress())
        sd = SetDir(target, "bench")
        state = State()
        one_run(sd, state, target)  # writes this computer's memory of the drive
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            one_run(sd, state, target)
            times.append((time.perf_counter() - t0) * 1000)
    med, p95 = statistics.median(times), sorted(times)[int(len(times) * 0.95)]
    print(f"drive checks per run: median {med:.3f} ms, 95th percentile {p95:.3f} ms "
          f"over {args.repeat} runs (goal <= {GOAL_MS} ms): "
          f"{'met' if p95 <= GOAL_MS else 'MISSED'}")
    return 0 if p95 <= GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
