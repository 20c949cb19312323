"""One million small files: twofold's no-op time against `rsync -a`, and its peak memory.

Generates N small files (a few hundred bytes to a few KB, ~100 per folder), backs them up
once with twofold and with `rsync -a` to two folders on the same disk, then times a no-op
run of each, cold (page cache dropped) and warm. Checks the goals of issue 3. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shlex
import shutil
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (
    MB,
    Measure,
    code_under_test,
    drop_caches,
    find_twofold,
    load_text,
    machine_facts,
    run_measured,
    stats_text,
    verdict,
)

SET = "bench"
MARKER = ".twofold-bench-scale"
RSYNC_FLAGS = ["-a"]
GOAL_NOOP, GOAL_MEM_MB = 0.6, 250
PER_FOLDER = 100
EXTS = (".txt", ".md", ".json", ".csv", ".py", ".html", ".log", ".eml", ".ini", ".xml")
WORDS = ("notes", "report", "draft", "Übersicht", "todo", "mail", "résumé", "config",
         "summary", "写真", "invoice", "readme")


def generate(root: str, files: int, seed: int) -> tuple[int, int, float]:
    """Write `files` small files under `root`, ~100 per folder in a two-level fan-out.

    Returns (files, folders, seconds). Content is a unique header plus a slice of a shared
    buffer of text-like bytes; written with os.open/os.write in a tight loop.
    """
    t0 = time.monotonic()
    rng = random.Random(seed)
    text = " ".join(rng.choice((*WORDS, "the", "and", "of", "a", "line\n")) for _ in
                    range(200_000)).encode()
    leaves = max(1, math.ceil(files / PER_FOLDER))
    fan = max(1, math.ceil(math.sqrt(leaves)))
    lo, hi = math.log(200), math.log(8192)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    written = folders = 0
    for leaf in range(leaves):
        top, sub = divmod(leaf, fan)
        folder = os.path.join(root, f"{WORDS[top % len(WORDS)]} {top:04d}", f"{sub:03d} stuff")
        os.makedirs(folder, exist_ok=True)
        folders += 1 + (sub == 0)
        for i in range(min(PER_FOLDER, files - written)):
            name = f"{WORDS[(leaf + i) % len(WORDS)]} {i:03d}{EXTS[i % len(EXTS)]}"
            size = int(math.exp(rng.uniform(lo, hi)))
            start = rng.randrange(len(text) - size)
            fd = os.open(os.path.join(folder, name), flags, 0o644)
            os.write(fd, b"%d/%d\n" % (leaf, i) + text[start:start + size])
            os.close(fd)
        written += min(PER_FOLDER, files - written)
    return written, folders, time.monotonic() - t0


def count_tree(root: str) -> tuple[int, int, int]:
    """(files, folders, bytes) under root."""
    files = dirs = size = 0
    todo = [root]
    while todo:
        with os.scandir(todo.pop()) as it:
            for d in it:
                if d.is_dir(follow_symlinks=False):
                    dirs += 1
                    todo.append(d.path)
                else:
                    files += 1
                    size += d.stat(follow_symlinks=False).st_size
    return files, dirs, size


@dataclass
class Row:
    """One phase: both tools."""

    phase: str
    twofold: Measure
    rsync: Measure
    load: str

    @property
    def ratio(self) -> float:
        """twofold seconds / rsync seconds."""
        return self.twofold.seconds / self.rsync.seconds


class Scale:
    """The workdir, the commands, the measured rows."""

    def __init__(self, workdir: str, twofold_cmd: list[str], extra: list[str], wrap: str,
                 env: dict[str, str] | None) -> None:
        self.workdir = workdir
        self.src = os.path.join(workdir, "src", "home")
        self.target = os.path.join(workdir, "twofold-target")
        self.rsync_dst = os.path.join(workdir, "rsync", "home")
        self.twofold_cmd, self.extra, self.wrap, self.env = twofold_cmd, extra, wrap, env
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.cold = True

    def _drop(self, cold: bool) -> None:
        if not cold:
            os.sync()
            return
        why = drop_caches()
        if why is not None and why not in self.notes:
            self.notes.append(why)
            self.cold = False

    def twofold(self, phase: str) -> Measure:
        """One measured twofold run."""
        prefix = shlex.split(self.wrap.replace("{phase}", phase)) if self.wrap else []
        m = run_measured([*prefix, *self.twofold_cmd, self.src, "--to", self.target, "--set",
                          SET, "--json", *self.extra], self.env)
        if m.rc not in (0, 3):
            raise SystemExit(f"twofold failed in {phase!r} (exit {m.rc}):\n{m.stdout[-4000:]}")
        return m

    def rsync(self) -> Measure:
        """One measured rsync run."""
        m = run_measured(["rsync", *RSYNC_FLAGS, self.src + "/", self.rsync_dst + "/"])
        if m.rc != 0:
            raise SystemExit(f"rsync failed (exit {m.rc}):\n{m.stdout[-4000:]}")
        return m

    def phase(self, name: str, cold: bool) -> Row:
        """Both tools on the unchanged source; twofold first."""
        label = f"{name} ({'cold' if cold and self.cold else 'warm'})"
        load = load_text()
        print(f"-- {label}: {load}", flush=True)
        self._drop(cold)
        tf = self.twofold(label)
        self._drop(cold)
        rs = self.rsync()
        row = Row(label, tf, rs, load)
        self.rows.append(row)
        print(f"   twofold {tf.seconds:8.2f} s, peak {tf.peak_mb:5.0f} MB largest process / "
              f"{tf.tree_mb:5.0f} MB tree | rsync {rs.seconds:8.2f} s | ratio "
              f"{row.ratio:.2f}x | twofold exit {tf.rc}: {stats_text(tf.stdout)}", flush=True)
        return row


def report(s: Scale, files: int) -> None:
    """The table and the goals."""
    print("\n| phase | twofold s | rsync s | ratio | twofold CPU s | rsync CPU s "
          "| twofold peak MB (largest process / process tree) | rsync peak MB | load at start |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in s.rows:
        t, q = r.twofold, r.rsync
        print(f"| {r.phase} | {t.seconds:.2f} | {q.seconds:.2f} | {r.ratio:.2f}x "
              f"| {t.cpu_s:.1f} | {q.cpu_s:.1f} | {t.peak_mb:.0f} / {t.tree_mb:.0f} "
              f"| {q.peak_mb:.0f} | {r.load} |")
    print("(peak: GNU time %M = the largest single process; process tree = largest sampled "
          "sum of PSS over twofold's processes, every 0.1 s: a page shared by n forked "
          "processes counts 1/n)")
    print("\nstats of each twofold run:")
    for r in s.rows:
        print(f"- {r.phase}: exit {r.twofold.rc}; {stats_text(r.twofold.stdout)}")
    scale = "" if files >= 1_000_000 else f" (this run has {files} files; the goal is for 1M)"
    print(f"\nGoals (issue 3){scale}:")
    for r in s.rows:
        if r.phase.startswith("no-op"):
            print(f"- no-op <= {GOAL_NOOP}x rsync, {r.phase}: {r.ratio:.2f}x "
                  f"{verdict(r.ratio <= GOAL_NOOP)}")
    if not s.rows:
        return
    peak = max(r.twofold.peak_mb for r in s.rows)
    tree = max(r.twofold.tree_mb for r in s.rows)
    print(f"- twofold peak memory <= {GOAL_MEM_MB} MB: largest process {peak:.0f} MB "
          f"{verdict(peak <= GOAL_MEM_MB)}; process tree {tree:.0f} MB "
          f"{verdict(tree <= GOAL_MEM_MB)}")


def prepare(workdir: str, files: int) -> None:
    """An empty workdir with room for the source and two copies."""
    if os.path.exists(workdir):
        if os.listdir(workdir) and not os.path.exists(os.path.join(workdir, MARKER)):
            raise SystemExit(f"scale: {workdir} exists, is not empty and was not made by this "
                             "benchmark; choose another --workdir")
        shutil.rmtree(workdir)
    probe = os.path.dirname(workdir)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    need = files * 3 * 6 * 1024 + (2 << 30)  # a block and an inode per file, three copies
    free = shutil.disk_usage(probe).free
    if free < need:
        raise SystemExit(f"scale: {probe} has {free / (1 << 30):.1f} GiB free, about "
                         f"{need / (1 << 30):.1f} GiB are needed")
    os.makedirs(workdir)
    open(os.path.join(workdir, MARKER), "w").close()
    for d in ("src/home", "twofold-target", "rsync/home"):
        os.makedirs(os.path.join(workdir, d))


def main(argv: list[str] | None = None) -> int:
    """Generate the files, back them up with both tools, time the no-op runs."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=1_000_000, help="files (1000000)")
    ap.add_argument("--seed", type=int, default=1, help="seed of sizes and content (1)")
    ap.add_argument("--workdir", default="/tmp/twofold-scale",
                    help="where the files and both copies go (/tmp/twofold-scale)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir afterwards")
    ap.add_argument("--reuse", action="store_true",
                    help="time the no-op runs again on a workdir kept with --keep")
    ap.add_argument("--twofold-args", default="", help="extra arguments for `twofold backup`")
    ap.add_argument("--wrap", default="", help="prefix for twofold's command ({phase} "
                    "replaced), e.g. 'py-spy record -s -o /tmp/{phase}.svg --'")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="run the working tree's src/ rather than an export of HEAD's")
    args = ap.parse_args(argv)
    if shutil.which("rsync") is None:
        raise SystemExit("scale: rsync is not installed")
    workdir = os.path.abspath(args.workdir)
    reuse = args.reuse and os.path.exists(os.path.join(workdir, MARKER))
    if args.reuse and not reuse:
        raise SystemExit(f"scale: --reuse needs a workdir kept by an earlier run ({workdir})")
    if reuse:
        shutil.rmtree(os.path.join(workdir, "twofold-src"), ignore_errors=True)
    else:
        prepare(workdir, args.files)
    env, version = code_under_test(workdir, args.pin)
    twofold_cmd, how = find_twofold(env)
    s = Scale(workdir, twofold_cmd, shlex.split(args.twofold_args), args.wrap, env)
    try:
        print("Machine:", "; ".join(machine_facts(workdir, version)))
        print(f"Start: {load_text()} on {os.cpu_count()} CPUs; {time.strftime('%F %T')}")
        print(f"twofold: {how}, `SRC --to TARGET --set {SET} --json {args.twofold_args}`; "
              f"rsync: `rsync {' '.join(RSYNC_FLAGS)} SRC/ DST/`", flush=True)
        if reuse:
            files, dirs, size = count_tree(s.src)
            print(f"Tree: {files} files in {dirs} folders, {size / MB:.0f} MiB, kept by an "
                  "earlier run, backed up there by both tools (--reuse: no full phase)")
        else:
            _n, _folders, secs = generate(s.src, args.files, args.seed)
            files, dirs, size = count_tree(s.src)
            print(f"Tree: {files} files in {dirs} folders, {size / MB:.0f} MiB "
                  f"(made in {secs:.1f} s)", flush=True)
            s.phase("full", cold=True)
        s.phase("no-op", cold=True)
        s.phase("no-op", cold=False)
        s.phase("no-op", cold=False)
        current = os.path.join(s.target, "twofold", SET, "current", "home")
        for who, root in (("twofold", current), ("rsync", s.rsync_dst)):
            got = count_tree(root)
            ok = got == (files, dirs, size)
            print(f"Check {who}: {got[0]} files, {got[1]} folders, {got[2] / MB:.0f} MiB: "
                  f"{'OK' if ok else 'WRONG'}")
        for note in s.notes:
            print("Note:", note)
        if s.cold:
            print("Page cache: dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before each "
                  "cold run")
        print(f"End: {load_text()}; {time.strftime('%F %T')}")
        report(s, args.files)
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
