"""kill -9 of `twofold image create`, `delete`, `prune` and `restore` at random points, then
the store checked: how many images are broken, how many processes are left (issue 15).

A file-backed ext4 of seeded files (reliability_images.make_source) is imaged twice into a
template store (a second image after a change, so delete and prune have work). Each trial
copies the template, starts one command as its own process (in a session of its own),
kills it with SIGKILL after a random part of the time an unkilled run of that command
takes, and then checks:
  processes left  any process of the killed command's session still alive 2 s later
  broken          `verify` finds damage, or an image listed restores to other bytes than
                  its source, or the next `create` fails (a killed create must leave no
                  half image, and its packs are reused)
  killed          the command was still running when the kill came (else it had finished)
The kill comes at a uniform random time from 0.05 s to the unkilled run's time; the
killed creates image a third disk, so they store new chunks.

    .venv/bin/python bench/kills_images.py [--kills 100] [--seed 15] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reliability_images import MB, C, P, make_source

from twofold.core.errors import TwofoldError
from twofold.image.create import create
from twofold.image.manage import list_store
from twofold.image.restore import restore
from twofold.image.verify import verify

COMMANDS = ("create", "delete", "prune", "restore")
SIZE_MIB, FILL_MIB = 160, 80  # each command takes a second or more, past its start-up


def command(kind: str, store: Path, disks: dict[str, Path], out: Path) -> list[str]:
    """The command line of one trial."""
    tf = [sys.executable, "-m", "twofold", "image"]
    if kind == "create":
        return [*tf, "create", str(disks["c"]), "--to", str(store), "--name", "c",
                "--compression", "9"]
    if kind == "delete":
        return [*tf, "delete", str(store), "a"]
    if kind == "prune":
        return [*tf, "prune", str(store), "--keep", "1"]
    return [*tf, "restore", str(store), "b", "--to", str(out)]


def session_alive(sid: int) -> list[int]:
    """Processes whose session is `sid`."""
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            left.append(int(entry))
    return left


def check(store: Path, disks: dict[str, Path], work: Path) -> bool:
    """True when the store is whole: verify sound, every image restores to its source's
    bytes, and a new create works."""
    try:
        if not verify(str(store), None, P, C).sound:
            return False
        for info in list_store(str(store)).images:
            out = work / "check.img"
            out.unlink(missing_ok=True)
            restore(str(store), info.name, str(out), None, P, C)
            want = disks[info.name if info.name in disks else "c"].read_bytes()
            if out.read_bytes() != want:
                return False
        create(str(disks["c"]), str(store), "after", 3, None, False, P, C)
        out = work / "check.img"
        out.unlink(missing_ok=True)
        restore(str(store), "after", str(out), None, P, C)
        return out.read_bytes() == disks["c"].read_bytes()
    except TwofoldError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=100, help="kills of each command (100)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="twofold-kills-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["TWOFOLD_STATE_DIR"] = str(work / "state")
    a = make_source(work / "a", SIZE_MIB, FILL_MIB, rng)
    b = make_source(work / "b", SIZE_MIB, FILL_MIB, rng)  # other files: a changed system
    c = make_source(work / "c", SIZE_MIB, FILL_MIB, rng)  # what the killed creates image
    disks = {"a": a, "b": b, "c": c}
    template = work / "template"
    template.mkdir()
    create(str(a), str(template), "a", 3, None, False, P, C)
    create(str(b), str(template), "b", 3, None, False, P, C)
    took: dict[str, float] = {}
    for kind in COMMANDS:  # how long an unkilled run takes
        store = work / "timing"
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(template, store)
        t0 = time.monotonic()
        subprocess.run(command(kind, store, disks, work / "t.img"), check=True,
                       capture_output=True)
        took[kind] = time.monotonic() - t0
    print("unkilled runs: " + ", ".join(f"{k} {v:.2f} s" for k, v in took.items()))
    print(f"{'command':8} {'trials':>6} {'killed':>6} {'broken':>6} {'left':>6}")
    bad = 0
    for kind in COMMANDS:
        killed = broken = left = 0
        for _ in range(args.kills):
            store = work / "trial"
            shutil.rmtree(store, ignore_errors=True)
            shutil.copytree(template, store)
            out = work / "restored.img"
            out.unlink(missing_ok=True)
            child = subprocess.Popen(command(kind, store, disks, out),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
            time.sleep(rng.uniform(0.05, took[kind]))
            if child.poll() is None:
                killed += 1
                child.send_signal(signal.SIGKILL)
            child.wait()
            time.sleep(2)
            stray = session_alive(child.pid)
            if stray:
                left += 1
                for pid in stray:
                    os.kill(pid, signal.SIGKILL)
            if not check(store, disks, work):
                broken += 1
        bad += broken + left
        print(f"{kind:8} {args.kills:6} {killed:6} {broken:6} {left:6}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    print(f"sizes: three ext4 disks of {SIZE_MIB} MiB, {FILL_MIB} MiB of files each "
          f"({MB >> 20} MiB chunks)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
