"""Reliability of the backup side under kill -9 and bit flips (issue 15).

On one generated tree (bench/gentree.py), it runs `twofold` as separate processes and:

- kills `backup`, `restore` and `prune` with SIGKILL at random moments (N each), each in
  a session of its own; after each kill it counts the processes of that session still
  running, lets the next command finish the job, and counts partial files (a copy in
  current/ or a restored file whose bytes are not whole) and files lost (not restorable
  with the source's bytes);
- flips N random bits: in copies in current/ (healable from the unchanged source) and in
  the BLAKE3 of catalog rows; `verify` must name each (detected), the next backup heal the
  copies and `verify --heal` put the catalog's hashes right (healed); what a final verify
  and a full restore still find wrong is lost.

Prints one table: trials, detected, healed, lost, partial files, processes left. Any
process a kill leaves behind is killed afterwards (and counted). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass

import blake3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gentree

SET = "rel"
TWOFOLD = [sys.executable, "-m", "twofold"]


@dataclass
class Row:
    """One line of the table."""

    what: str
    trials: int = 0
    hit: int = 0  # kills that found the command still running
    detected: int = 0
    healed: int = 0
    lost: int = 0
    partial: int = 0
    left: int = 0


def _session(sid: int) -> list[int]:
    """Pids of session `sid` that still run (zombies are done)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(name))
    return out


def twofold(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one twofold command to its end."""
    done = subprocess.run([*TWOFOLD, *args], capture_output=True, text=True, check=False)
    if check and done.returncode not in (0, 3):
        raise SystemExit(f"twofold {' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stdout}{done.stderr}")
    return done


def killed(args: list[str], after: float, row: Row) -> int:
    """Start twofold `args`, SIGKILL it `after` seconds later (if still running; counted
    in row.hit); returns how many of its processes were still running 10 s later (then
    killed)."""
    proc = subprocess.Popen([*TWOFOLD, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        row.hit += 1
    end = time.monotonic() + 10
    while _session(proc.pid) and time.monotonic() < end:
        time.sleep(0.1)
    left = _session(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return len(left)


def timed(args: list[str]) -> float:
    t0 = time.monotonic()
    twofold(*args)
    return time.monotonic() - t0


def digest(path: str) -> bytes:
    h = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def files_of(root: str) -> dict[str, str]:
    """Relative path -> absolute path of every regular file below `root`."""
    out = {}
    for parent, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(parent, n)
            if os.path.isfile(p) and not os.path.islink(p):
                out[os.path.relpath(p, root)] = p
    return out


def compare(src: str, restored: str) -> tuple[int, int]:
    """(files of `src` missing or different in `restored`, other files in `restored`
    that are not whole: temp files a killed restore left)."""
    want, got = files_of(src), files_of(restored)
    lost = sum(1 for rel, p in want.items() if rel not in got or digest(p) != digest(got[rel]))
    partial = sum(1 for rel in got if rel not in want)
    return lost, partial


def verify_json(target: str, *extra: str) -> dict[str, object]:
    done = twofold("verify", "--from", target, "--set", SET, "--json", *extra, check=False)
    return json.loads(done.stdout)


class Bench:
    """The tree, the target and the counts."""

    def __init__(self, work: str, files: int, size: int, seed: int) -> None:
        self.work = work
        self.src = os.path.join(work, "src")
        self.target = os.path.join(work, "target")
        self.rng = random.Random(seed)
        gentree.generate(self.src, files, size, seed)
        os.makedirs(self.target)
        self.full_s = timed(["backup", self.src, "--to", self.target, "--set", SET])

    def backup_args(self) -> list[str]:
        return ["backup", self.src, "--to", self.target, "--set", SET, "--allow-mass-delete"]

    def edit(self, share: float) -> None:
        """Rewrite a share of the files (new content, new size)."""
        names = sorted(files_of(self.src).values())
        for p in self.rng.sample(names, max(1, int(len(names) * share))):
            with open(p, "ab") as f:
                f.write(self.rng.randbytes(self.rng.randint(1, 5000)))

    def restore_check(self, row: Row) -> None:
        dest = os.path.join(self.work, "check")
        shutil.rmtree(dest, ignore_errors=True)
        twofold("restore", "--from", self.target, "--set", SET, "--to", dest)
        lost, partial = compare(self.src, os.path.join(dest, "src"))
        row.lost += lost
        row.partial += partial

    def kill_backups(self, n: int) -> Row:
        row = Row("kill -9 backup")
        for _ in range(n):
            self.edit(0.3)
            row.trials += 1
            row.left += killed(self.backup_args(), self.rng.uniform(0, self.full_s * 0.6), row)
            twofold(*self.backup_args())  # finishes the killed run's work
            found = verify_json(self.target)
            row.partial += len(found["problems"])  # type: ignore[arg-type]
        self.restore_check(row)
        return row

    def kill_restores(self, n: int) -> Row:
        row = Row("kill -9 restore")
        ref = timed(["restore", "--from", self.target, "--set", SET, "--to",
                     os.path.join(self.work, "ref")])
        for i in range(n):
            dest = os.path.join(self.work, f"r{i}")
            row.trials += 1
            row.left += killed(["restore", "--from", self.target, "--set", SET, "--to", dest],
                               self.rng.uniform(0, ref), row)
            got = files_of(os.path.join(dest, "src"))
            want = files_of(self.src)
            row.partial += sum(1 for rel, p in got.items()  # a file in place is whole
                               if rel not in want or digest(p) != digest(want[rel]))
            shutil.rmtree(dest, ignore_errors=True)
        return row

    def kill_prunes(self, n: int) -> Row:
        row = Row("kill -9 prune")
        for _ in range(n):
            for _run in range(2):  # versions to prune
                self.edit(0.2)
                twofold(*self.backup_args())
            row.trials += 1
            t0 = time.monotonic()
            twofold("prune", "--from", self.target, "--set", SET, "--keep-daily", "1",
                    "--dry-run")
            dry = time.monotonic() - t0
            row.left += killed(["prune", "--from", self.target, "--set", SET,
                                "--keep-daily", "1"], self.rng.uniform(0, dry * 2), row)
            found = verify_json(self.target)
            row.partial += len(found["problems"])  # type: ignore[arg-type]
        self.restore_check(row)
        return row

    def flips(self, n: int) -> list[Row]:
        copies, hashes = Row("bit flip in a copy"), Row("bit flip in a catalog hash")
        current = os.path.join(self.target, "twofold", SET, "current")
        cat = os.path.join(self.target, "twofold", SET, "catalog.sqlite")
        batch = max(1, n // 5)
        done = 0
        while done < n:
            k = min(batch, n - done)
            flipped: set[str] = set()
            db = sqlite3.connect(cat, isolation_level=None)
            open_rows = [(rid, bytes(p)) for rid, p in db.execute(
                "SELECT id, path FROM entries WHERE until_run IS NULL AND kind='f' AND "
                "link_to IS NULL AND size > 0")]
            for rid, path in self.rng.sample(open_rows, k):
                if self.rng.random() < 0.8:  # a copy
                    p = os.path.join(current, os.fsdecode(path))
                    with open(p, "r+b") as f:
                        size = os.fstat(f.fileno()).st_size
                        at = self.rng.randrange(size)
                        f.seek(at)
                        b = f.read(1)[0]
                        f.seek(at)
                        f.write(bytes([b ^ (1 << self.rng.randrange(8))]))
                    copies.trials += 1
                    flipped.add("c:" + os.fsdecode(path))
                else:  # the row's hash
                    (h,) = db.execute("SELECT hash FROM entries WHERE id=?", (rid,)).fetchone()
                    at = self.rng.randrange(len(h))
                    h = h[:at] + bytes([h[at] ^ (1 << self.rng.randrange(8))]) + h[at + 1:]
                    db.execute("UPDATE entries SET hash=? WHERE id=?", (h, rid))
                    hashes.trials += 1
                    flipped.add("h:" + os.fsdecode(path))
            db.close()
            done += k
            found = verify_json(self.target)
            named = {("h:" if i["kind"] == "catalog" else "c:") + str(i["path"])
                     for i in found["problems"]}  # type: ignore[attr-defined]
            copies.detected += sum(1 for f in flipped if f.startswith("c:") and f in named)
            hashes.detected += sum(1 for f in flipped if f.startswith("h:") and f in named)
            out = twofold(*self.backup_args(), "--json")
            copies.healed += int(json.loads(out.stdout)["stats"].get("healed", 0))
            fixed = verify_json(self.target, "--heal")
            hashes.healed += int(fixed.get("fixed_hashes", 0))  # type: ignore[call-overload]
        left = verify_json(self.target)["problems"]
        copies.lost += sum(1 for i in left if i["kind"] != "catalog")  # type: ignore[attr-defined]
        hashes.lost += sum(1 for i in left if i["kind"] == "catalog")  # type: ignore[attr-defined]
        self.restore_check(copies)
        return [copies, hashes]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10, help="kills of each command (10)")
    ap.add_argument("--flips", type=int, default=100, help="bit flips (100)")
    ap.add_argument("--files", type=int, default=1500, help="files in the tree (1500)")
    ap.add_argument("--total-size", default="60M", help="bytes in the tree (60M)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--workdir", default="/var/tmp/twofold-reliability")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    t0 = time.monotonic()
    try:
        b = Bench(a.workdir, a.files, gentree.parse_size(a.total_size), a.seed)
        rows = [b.kill_backups(a.kills), b.kill_restores(a.kills), b.kill_prunes(a.kills),
                *b.flips(a.flips)]
    finally:
        if not a.keep:
            shutil.rmtree(a.workdir, ignore_errors=True)
    print(f"{a.files} files, {a.total_size}, seed {a.seed}; "
          f"{time.monotonic() - t0:.0f} s\n")
    print("| trial | trials | killed running | detected | healed | lost | partial files | "
          "processes left |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        flip = r.what.startswith("bit")
        print(f"| {r.what} | {r.trials} | {'-' if flip else r.hit} | "
              f"{r.detected if flip else '-'} | {r.healed if flip else '-'} | {r.lost} | "
              f"{r.partial} | {r.left} |")


if __name__ == "__main__":
    main()
