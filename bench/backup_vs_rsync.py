"""Time twofold against `rsync -aH --delete` on one generated tree: full, no-op, ~1 % changed.

Both tools copy the same source (made by bench/gentree.py) to their own folder on the same
file system; the page cache is dropped before each cold measurement when we are root.
Prints a table and checks the goals of issue 2. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import stat
import sys
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gentree
from common import (
    MB,
    Measure,
    code_under_test,
    drop_caches,
    find_twofold,
    machine_facts,
    run_measured,
    stats_text,
    verdict,
)

SET = "bench"
MARKER = ".twofold-bench"
RSYNC_FLAGS = ["-aH", "--delete"]
GOAL_FULL, GOAL_NOOP, GOAL_MEM_MB = 1.0, 0.6, 200



# measuring one process ------------------------------------------------------------------------

# checking copies ------------------------------------------------------------------------------

Listing = list[tuple[str, str, int, int, str]]


def tree_listing(root: str) -> Listing:
    """(path, type, size, mtime_ns of files, link target or hard-link group) of every entry.

    Type "h" marks a file that shares its inode with another name inside `root`; its last
    field is the first such name, so hard-link groups must match, not just link counts
    (a copy's inode may also have names outside `root`, e.g. in twofold's versions/).
    """
    rows: Listing = []
    inodes: dict[int, list[int]] = {}
    todo = [""]
    while todo:
        rel = todo.pop()
        with os.scandir(os.path.join(root, rel)) as it:
            for d in it:
                p = f"{rel}/{d.name}" if rel else d.name
                st = d.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    rows.append((p, "d", 0, 0, ""))
                    todo.append(p)
                elif stat.S_ISLNK(st.st_mode):
                    rows.append((p, "l", 0, 0, os.readlink(d.path)))
                else:
                    if st.st_nlink > 1:
                        inodes.setdefault(st.st_ino, []).append(len(rows))
                    rows.append((p, "f", st.st_size, st.st_mtime_ns, ""))
    for idx in inodes.values():
        if len(idx) > 1:
            first = min(rows[i][0] for i in idx)
            for i in idx:
                rows[i] = (rows[i][0], "h", rows[i][2], rows[i][3], first)
    rows.sort()
    return rows


def compare_trees(src: Listing, copy_root: str) -> str | None:
    """None when the copy lists the same entries as the source, else what differs."""
    dst = tree_listing(copy_root)
    if dst == src:
        return None
    a, b = set(src), set(dst)
    missing, extra = sorted(a - b)[:3], sorted(b - a)[:3]
    return (f"{len(src)} entries in the source, {len(dst)} in the copy; "
            f"differ e.g. source {missing} copy {extra}")


def same_content(src_root: str, copy_root: str, rels: list[str]) -> str | None:
    """None when every listed file has the same bytes in the copy."""
    for rel in rels:
        with open(os.path.join(src_root, rel), "rb") as a, \
                open(os.path.join(copy_root, rel), "rb") as b:
            if hashlib.blake2b(a.read()).digest() != hashlib.blake2b(b.read()).digest():
                return f"{rel} differs"
    return None


def listing_counts(rows: Listing) -> str:
    """A short description of a listing."""
    n = {k: sum(1 for r in rows if r[1] == k) for k in "fhld"}
    size = sum(r[2] for r in rows)
    return (f"{n['f'] + n['h']} files ({n['h']} hard-link names), {n['l']} symlinks, "
            f"{n['d']} folders, {size / MB:.0f} MiB")


# the benchmark --------------------------------------------------------------------------------

@dataclass
class Row:
    """One phase: both tools' measurements."""

    phase: str
    twofold: Measure
    rsync: Measure
    checks: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """twofold seconds / rsync seconds."""
        return self.twofold.seconds / self.rsync.seconds


@dataclass
class Bench:
    """Paths and commands of one benchmark run."""

    workdir: str
    twofold_cmd: list[str]
    wrap: str
    twofold_args: list[str]
    env: dict[str, str] | None
    cold: bool
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def src(self) -> str:
        """The generated source folder."""
        return os.path.join(self.workdir, "src", "home")

    @property
    def target(self) -> str:
        """twofold's target folder."""
        return os.path.join(self.workdir, "twofold-target")

    @property
    def current(self) -> str:
        """Where twofold keeps the current copy of the source."""
        return os.path.join(self.target, "twofold", SET, "current", "home")

    @property
    def rsync_dst(self) -> str:
        """rsync's copy of the source."""
        return os.path.join(self.workdir, "rsync", "home")

    def twofold(self, phase: str) -> Measure:
        """One measured twofold run."""
        prefix = shlex.split(self.wrap.replace("{phase}", phase)) if self.wrap else []
        m = run_measured([*prefix, *self.twofold_cmd, self.src, "--to", self.target,
                          "--set", SET, "--json", *self.twofold_args], self.env)
        if m.rc not in (0, 3):
            raise SystemExit(f"twofold failed in phase {phase!r} (exit {m.rc}):\n{m.stdout}")
        return m

    def rsync(self) -> Measure:
        """One measured rsync run."""
        m = run_measured(["rsync", *RSYNC_FLAGS, self.src + "/", self.rsync_dst + "/"])
        if m.rc != 0:
            raise SystemExit(f"rsync failed (exit {m.rc}):\n{m.stdout}")
        return m

    def phase(self, name: str, cold: bool, changed: list[str] | None = None,
              repeat: int = 1) -> Row:
        """Measure both tools on the current source, then check both copies.

        `repeat` (warm phases that change nothing): the tools take turns that many times
        and the run of median time stands for each, as one run of a second is at the mercy
        of whatever else the machine does at that moment.
        """
        if cold:
            self._drop()
        else:
            os.sync()
        label = f"{name} ({'cold' if cold and self.cold else 'warm'})"
        print(f"-- {label}: load average {os.getloadavg()[0]:.2f}", flush=True)
        tfs: list[Measure] = []
        rss: list[Measure] = []
        for _ in range(repeat):
            tfs.append(self.twofold(label))
            if cold:
                self._drop()
            rss.append(self.rsync())
        tf, rs = median_run(tfs), median_run(rss)
        if repeat > 1:
            print(f"   {repeat} turns each, seconds: twofold "
                  f"{', '.join(f'{m.seconds:.2f}' for m in tfs)}; rsync "
                  f"{', '.join(f'{m.seconds:.2f}' for m in rss)} (medians below)", flush=True)
            label += f", median of {repeat}"
        row = Row(label, tf, rs)
        src_rows = tree_listing(self.src)
        for who, root in (("twofold", self.current), ("rsync", self.rsync_dst)):
            problem = compare_trees(src_rows, root)
            if problem is None and changed:
                problem = same_content(self.src, root, changed)
            row.checks.append(f"{who}: {'OK' if problem is None else 'WRONG: ' + problem}")
        row.checks.append(f"twofold exit {tf.rc}; {stats_text(tf.stdout)}")
        print(f"   twofold {tf.seconds:7.2f} s {tf.peak_mb:6.0f} MB | rsync {rs.seconds:7.2f} s "
              f"{rs.peak_mb:6.0f} MB | {'; '.join(row.checks)}", flush=True)
        self.rows.append(row)
        return row

    def _drop(self) -> None:
        why = drop_caches()
        if why is not None and why not in self.notes:
            self.notes.append(why)
            self.cold = False


def median_run(runs: list[Measure]) -> Measure:
    """The run of median time (the lower middle one of an even number)."""
    return sorted(runs, key=lambda m: m.seconds)[(len(runs) - 1) // 2]


def check_space(workdir: str, total: int) -> None:
    """Fail clearly unless the workdir's file system can hold the source and two copies."""
    probe = os.path.abspath(workdir)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    need = int(3.3 * total) + 256 * MB + (1 << 30)
    free = shutil.disk_usage(probe).free
    if free < need:
        raise SystemExit(f"backup_vs_rsync: {probe} has {free / (1 << 30):.1f} GiB free, the "
                         f"benchmark needs about {need / (1 << 30):.1f} GiB (source + 2 copies); "
                         "choose another --workdir or a smaller --total-size")


def prepare_workdir(workdir: str) -> None:
    """Create an empty workdir, clearing one left by an earlier run of this benchmark."""
    if os.path.exists(workdir):
        if os.listdir(workdir) and not os.path.exists(os.path.join(workdir, MARKER)):
            raise SystemExit(f"backup_vs_rsync: {workdir} exists, is not empty and was not "
                             "made by this benchmark; choose another --workdir")
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    open(os.path.join(workdir, MARKER), "w").close()
    os.makedirs(os.path.join(workdir, "twofold-target"))
    os.makedirs(os.path.join(workdir, "rsync", "home"))


def report(b: Bench, files: int) -> None:
    """Print the table and the goals."""
    print("\n| phase | twofold s | rsync s | ratio | rsync+sync s | twofold CPU s "
          "| rsync CPU s | twofold peak MB | rsync peak MB (largest process / all processes) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in b.rows:
        t, s = r.twofold, r.rsync
        print(f"| {r.phase} | {t.seconds:.2f} | {s.seconds:.2f} | {r.ratio:.2f}x "
              f"| {s.seconds + s.sync_s:.2f} | {t.cpu_s:.1f} | {s.cpu_s:.1f} | {t.peak_mb:.0f} "
              f"| {s.peak_mb:.0f} / {f'{s.tree_mb:.0f}' if s.tree_mb else '-'} |")
    print("(CPU s: user + system, all processes of the tool. All processes: PSS (shared "
          "pages split between the processes sharing them) summed over rsync's processes, "
          "sampled every 0.1 s; '-' when the run ended before the first sample)")
    print("\nChecks after each phase:")
    for r in b.rows:
        print(f"- {r.phase}: " + "; ".join(r.checks))
    full = [r for r in b.rows if r.phase.startswith("full")]
    noop = [r for r in b.rows if r.phase.startswith("no-op")]
    peak = max(r.twofold.peak_mb for r in b.rows)
    print("\nGoals (issue 2):")
    for r in full:
        print(f"- full backup <= {GOAL_FULL}x rsync, {r.phase}: {r.ratio:.2f}x "
              f"{verdict(r.ratio <= GOAL_FULL)}")
    for r in noop:
        print(f"- no-op run <= {GOAL_NOOP}x rsync, {r.phase}: {r.ratio:.2f}x "
              f"{verdict(r.ratio <= GOAL_NOOP)}")
    scale = "" if files >= 100_000 else f" (this run has {files} files; the goal is for 100k)"
    print(f"- twofold peak memory <= {GOAL_MEM_MB} MB: {peak:.0f} MB "
          f"{verdict(peak <= GOAL_MEM_MB)}{scale}")
    wrong = [c for r in b.rows for c in r.checks if "WRONG" in c]
    print(f"- copies correct after every phase: {verdict(not wrong)}")


def main(argv: list[str] | None = None) -> int:
    """Generate a tree, measure both tools on it, print the results."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=100_000, help="files in the tree (100000)")
    ap.add_argument("--total-size", default="2G", help="bytes in the tree, e.g. 50M (2G)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the tree (1)")
    ap.add_argument("--change", type=float, default=0.01,
                    help="fraction of files changed between runs (0.01)")
    ap.add_argument("--workdir", default="/var/tmp/twofold-bench",
                    help="where the tree and both copies go (/var/tmp/twofold-bench)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir afterwards")
    ap.add_argument("--repeat", type=int, default=5,
                    help="turns each tool takes at the warm no-op; medians are reported (5)")
    ap.add_argument("--warm-full", action="store_true",
                    help="also time a full backup with a warm cache (two more full copies)")
    ap.add_argument("--wrap", default="",
                    help="prefix for twofold's command, '{phase}' replaced by the phase, e.g. "
                         "'py-spy record -o /tmp/{phase}.svg --'")
    ap.add_argument("--twofold-args", default="",
                    help="extra arguments for `twofold backup`, e.g. '--workers 1' (CLI only)")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="run the working tree's src/ rather than an export of HEAD's")
    args = ap.parse_args(argv)
    total = gentree.parse_size(args.total_size)
    workdir = os.path.abspath(args.workdir)
    check_space(workdir, total)
    if shutil.which("rsync") is None:
        raise SystemExit("backup_vs_rsync: rsync is not installed")
    prepare_workdir(workdir)
    env, version = code_under_test(workdir, args.pin)
    twofold_cmd, how = find_twofold(env)
    b = Bench(workdir, twofold_cmd, args.wrap, shlex.split(args.twofold_args), env,
              cold=True)
    try:
        print("Machine:", "; ".join(machine_facts(workdir, version)))
        print(f"Note: {os.cpu_count()} CPUs shared with whatever else runs now "
              f"(load average at start {os.getloadavg()[0]:.2f}).")
        extra = f" {args.twofold_args}" if args.twofold_args else ""
        print(f"twofold: {how}, `--set {SET} --json{extra}`; "
              f"rsync: `rsync {' '.join(RSYNC_FLAGS)} SRC/ DST/`"
              " (-H for hard links; no -S, so rsync writes holes of sparse files as zeros; "
              "rsync does not fsync, twofold does: see the rsync+sync column)")
        s = gentree.generate(b.src, args.files, total, args.seed)
        print(f"Tree: {s.files} files ({s.small} small, {s.medium} medium, {s.videos} videos, "
              f"{s.sparse} sparse), {s.bytes / MB:.0f} MiB of data, {s.dirs} folders "
              f"({s.empty_dirs} empty), {s.symlinks} symlinks, {s.hardlinks} hard links; "
              f"made in {s.seconds:.1f} s", flush=True)
        print(f"Listing: {listing_counts(tree_listing(b.src))}", flush=True)
        b.phase("full", cold=True)
        b.phase("no-op", cold=True)
        b.phase("no-op", cold=False, repeat=args.repeat)
        for i, cold in enumerate((True, False)):
            m = gentree.mutate(b.src, args.change, args.seed + i)
            print(f"Changed the source: edited {len(m.edited)}, added {len(m.added)}, "
                  f"deleted {len(m.deleted)} files", flush=True)
            b.phase(f"{args.change:.0%} changed", cold=cold, changed=m.edited + m.added)
        if args.warm_full:
            shutil.rmtree(b.target)
            shutil.rmtree(b.rsync_dst)
            os.makedirs(b.target)
            os.makedirs(b.rsync_dst)
            tree_listing(b.src)
            b.phase("full", cold=False)
        for note in b.notes:
            print("Note:", note)
        if b.cold:
            print("Page cache: dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before "
                  "each cold measurement")
        report(b, args.files)
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
