"""twofold against `rsync -a` on real exFAT and NTFS drives (issue 3), root only.

Makes each drive from an image file (mkfs.exfat + losetup + mount.exfat-fuse; mkfs.ntfs +
ntfs-3g), one drive per tool, generates a ~50,000-entry tree (bench/gentree.py plus names
Windows forbids and case twins), then times a full and a no-op run of each tool with the
page cache dropped, and counts what the no-op run touches: from the tool's own report and
from an lstat listing of the whole drive taken before and after. See bench/README.md.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gentree
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
    twofold_stats,
    verdict,
)

SET = "bench"
MARKER = ".twofold-bench-foreign"
RSYNC_FLAGS = ["-a", "--itemize-changes", "--stats"]
GOAL_NOOP, GOAL_FULL = 0.1, 1.0
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
TOOLS = {"exfat": ("mkfs.exfat", "losetup", "mount.exfat-fuse"),
         "ntfs": ("mkfs.ntfs", "ntfs-3g")}
# not part of what a no-op may touch: the catalog records the run
IGNORE = ("twofold/*/catalog.sqlite*",)
ODD = ("meeting: {i}.txt", "what now? {i}.md", "star*{i}.txt", 'quote "{i}".txt',
       "<tag {i}>.html", "pipe|{i}.csv", "back\\slash {i}.txt", "trailing dot {i}.",
       "trailing space {i} ", "CON", "aux.txt", "nul.{i}.log", "COM1.txt")


# drives ---------------------------------------------------------------------------------------

def tool(name: str) -> str:
    """Path of an external tool, also looking in sbin."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if path is None:
        raise SystemExit(f"foreign_targets: {name} is not installed")
    return path


def run(*cmd: str) -> str:
    """Run a tool, failing loudly; its stdout."""
    done = subprocess.run([tool(cmd[0]), *cmd[1:]], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}"
                         f"{done.stderr}")
    return done.stdout


@contextmanager
def drive(kind: str, image: str, mnt: str, size: int) -> Iterator[str]:
    """A fresh `kind` drive made in `image`, mounted at `mnt` for the duration."""
    with open(image, "wb") as f:
        f.truncate(size)
    os.makedirs(mnt, exist_ok=True)
    with ExitStack() as stack:
        if kind == "exfat":
            run("mkfs.exfat", image)
            dev = run("losetup", "-f", "--show", image).strip()
            stack.callback(subprocess.run, ["losetup", "-d", dev], check=False)
            run("mount.exfat-fuse", dev, mnt)
        else:
            run("mkfs.ntfs", "-q", "-F", "-f", image)
            run("ntfs-3g", image, mnt)
        stack.callback(subprocess.run, ["umount", mnt], check=False, capture_output=True)
        yield mnt
    os.unlink(image)


# what a run touches ---------------------------------------------------------------------------

Stat = tuple[int, int, int, int, int]  # mode, size, mtime_ns, ctime_ns, ino
FIELDS = ("mode", "size", "mtime", "ctime", "ino")


def listing(root: str) -> dict[str, Stat]:
    """lstat of every path on the drive (the root as '.'), leaving out IGNORE."""
    rows: dict[str, Stat] = {}
    st = os.lstat(root)
    rows["."] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    todo = [""]
    while todo:
        rel = todo.pop()
        with os.scandir(os.path.join(root, rel)) as it:
            for d in it:
                p = f"{rel}/{d.name}" if rel else d.name
                if any(fnmatch.fnmatch(p, pat) for pat in IGNORE):
                    continue
                st = d.stat(follow_symlinks=False)
                rows[p] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                if d.is_dir(follow_symlinks=False):
                    todo.append(p)
    return rows


@dataclass
class Touched:
    """How two listings differ."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # path -> fields

    @property
    def count(self) -> int:
        """Entries added, removed or changed."""
        return len(self.added) + len(self.removed) + len(self.changed)

    def fields(self) -> dict[str, int]:
        """How many changed entries differ in each field."""
        n: dict[str, int] = {}
        for fs in self.changed.values():
            for f in fs:
                n[f] = n.get(f, 0) + 1
        return n

    def text(self) -> str:
        """A short description with examples."""
        if not self.count:
            return "0 entries"
        ex = [f"+{p}" for p in self.added[:2]] + [f"-{p}" for p in self.removed[:2]] + \
             [f"{p} ({','.join(fs)})" for p, fs in list(self.changed.items())[:4]]
        return (f"{self.count} entries ({len(self.added)} added, {len(self.removed)} removed, "
                f"{len(self.changed)} changed: {self.fields()}); e.g. {ex}")


def diff(before: dict[str, Stat], after: dict[str, Stat],
         noisy: dict[str, list[str]] | None = None) -> Touched:
    """What changed between two listings; fields listed for a path in `noisy` (they changed
    with nothing run, e.g. FUSE inode numbers after a cache drop) are not compared."""
    noisy = noisy or {}
    t = Touched()
    t.added = sorted(set(after) - set(before))
    t.removed = sorted(set(before) - set(after))
    for p, a in before.items():
        b = after.get(p)
        if b is not None and a != b:
            skip = noisy.get(p, ())
            fs = [f for f, x, y in zip(FIELDS, a, b, strict=True) if x != y and f not in skip]
            if fs:
                t.changed[p] = fs
    return t


# the benchmark --------------------------------------------------------------------------------

@dataclass
class Result:
    """Both runs of one tool on one drive."""

    kind: str
    tool: str
    full: Measure
    noop: Measure
    noop_warm: Measure
    touched: Touched  # by the cold no-op, from the lstat listings
    noise: Touched  # between two listings with nothing run in between but a cache drop
    reported: str  # what the tool itself says its no-op touched
    errors_full: int
    errors_noop: int
    loads: list[str]


def rsync_report(out: str) -> tuple[int, str]:
    """(error lines, what rsync says it touched) from `rsync -i --stats` output."""
    errors = sum(1 for line in out.splitlines() if line.startswith("rsync: "))
    items = [line for line in out.splitlines()
             if re.match(r"^(\*deleting|[<>ch.][fdLDS][^ ]{9} )", line)]
    kinds = Counter(line.split(" ", 1)[0] for line in items).most_common(3)
    m = re.search(r"Number of regular files transferred: ([\d,]+)", out)
    n = re.search(r"Number of files: ([\d,]+)", out)
    sent = m.group(1) if m else "?"
    total = n.group(1) if n else "?"
    return errors, (f"{len(items)} itemized ({', '.join(f'{n}× {k}' for k, n in kinds)}), "
                    f"{sent} of {total} entries' files transferred")


def twofold_report(out: str) -> str:
    """What twofold's --json stats say its run touched."""
    s = twofold_stats(out)
    if s is None:
        return "no JSON from twofold"
    keys = ("new", "changed", "metadata", "deleted", "moved")
    touched = sum(int(str(s.get(k) or 0)) for k in keys)
    return f"{touched} ({stats_text(out)})"


def twofold_errors(out: str) -> int:
    """Skipped items and issues in twofold's --json output."""
    s = twofold_stats(out)
    if s is None:
        return -1
    issues = s.get("issues") or []
    return max(int(s.get("skipped", 0) or 0), len(issues) if isinstance(issues, list) else 0)


class Foreign:
    """Workdir, commands and results."""

    def __init__(self, workdir: str, twofold_cmd: list[str], extra: list[str],
                 env: dict[str, str] | None, drive_size: int) -> None:
        self.workdir = workdir
        self.src = os.path.join(workdir, "src", "home")
        self.twofold_cmd, self.extra, self.env = twofold_cmd, extra, env
        self.drive_size = drive_size
        self.results: list[Result] = []
        self.notes: list[str] = []
        self.cold = True
        self.outputs: dict[str, str] = {}

    def drop(self) -> None:
        """Drop the page cache (or note why not)."""
        why = drop_caches()
        if why is not None and why not in self.notes:
            self.notes.append(why)
            self.cold = False

    def command(self, who: str, mnt: str) -> list[str]:
        """The command of one run of `who` to the drive at mnt."""
        if who == "rsync":
            return ["rsync", *RSYNC_FLAGS, self.src + "/", os.path.join(mnt, "home") + "/"]
        return [*self.twofold_cmd, self.src, "--to", mnt, "--set", SET, "--json", *self.extra]

    def timed(self, label: str, cmd: list[str], cold: bool, env: dict[str, str] | None,
              loads: list[str]) -> Measure:
        """One run, cold or warm."""
        if cold:
            self.drop()
        else:
            os.sync()
        loads.append(load_text())
        m = run_measured(cmd, env)
        self.outputs[label] = m.stdout
        print(f"   {label}: {m.seconds:.2f} s, exit {m.rc} ({loads[-1]})", flush=True)
        return m

    def measure(self, kind: str, who: str) -> Result:
        """Full, no-op (cold) and no-op (warm) of one tool on a fresh drive."""
        image = os.path.join(self.workdir, f"{kind}-{who}.img")
        mnt = os.path.join(self.workdir, f"mnt-{kind}-{who}")
        env = self.env if who == "twofold" else None
        loads: list[str] = []
        print(f"-- {kind}, {who}", flush=True)
        with drive(kind, image, mnt, self.drive_size):
            cmd = self.command(who, mnt)
            full = self.timed(f"{kind} {who} full", cmd, True, env, loads)
            os.sync()
            before = listing(mnt)
            self.drop()
            again = listing(mnt)
            noise = diff(before, again)
            noop = self.timed(f"{kind} {who} no-op", cmd, True, env, loads)
            os.sync()
            touched = diff(again, listing(mnt), noise.changed)
            warm = self.timed(f"{kind} {who} no-op warm", cmd, False, env, loads)
            if who == "rsync":
                errors_full, _ = rsync_report(full.stdout)
                errors_noop, reported = rsync_report(noop.stdout)
            else:
                errors_full, errors_noop = twofold_errors(full.stdout), twofold_errors(noop.stdout)
                reported = twofold_report(noop.stdout)
            r = Result(kind, who, full, noop, warm, touched, noise, reported, errors_full,
                       errors_noop, loads)
            print(f"   no-op touched (lstat): {touched.text()}"
                  f"{f'; not compared (noise): {noise.fields()}' if noise.count else ''}\n"
                  f"   no-op touched ({who}): {reported}\n"
                  f"   errors: full {errors_full}, no-op {errors_noop}", flush=True)
            self.results.append(r)
            return r


def first_line(cmd: list[str]) -> str:
    """The first line a command prints on stdout or stderr (a driver's version)."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip().split("\n")[0] or "?"


def add_odd_names(root: str, n: int, seed: int) -> int:
    """Files whose names Windows forbids, case twins and a forbidden folder; how many."""
    rng = random.Random(seed ^ 0x0DD)
    folders = sorted(d for d, _, _ in os.walk(root))
    made = 0
    for i in range(n):
        folder = rng.choice(folders)
        name = ODD[i % len(ODD)].format(i=i)
        path = os.path.join(folder, name)
        if os.path.lexists(path):
            continue
        with open(path, "w") as f:
            f.write(f"odd name {i}\n")
        made += 1
        if i % 5 == 0:  # a case twin next to a plain file
            for twin in (f"Readme {i}.txt", f"README {i}.txt"):
                with open(os.path.join(folder, twin), "w") as f:
                    f.write(f"{twin}\n")
                made += 1
    bad = os.path.join(root, "Projects", "client: acme?")
    os.makedirs(bad)
    for j in range(3):
        with open(os.path.join(bad, f"file {j}.txt"), "w") as f:
            f.write("in a folder with a forbidden name\n")
    return made + 4


def count_entries(root: str) -> dict[str, int]:
    """Entries by type under root."""
    n = {"files": 0, "folders": 0, "symlinks": 0}
    for _dirpath, dirs, files in os.walk(root):
        for d in dirs:
            n["symlinks" if os.path.islink(os.path.join(_dirpath, d)) else "folders"] += 1
        for f in files:
            n["symlinks" if os.path.islink(os.path.join(_dirpath, f)) else "files"] += 1
    return n


def report(b: Foreign) -> None:
    """The table and the goals."""
    print("\n| drive | tool | full s | no-op s (cold) | no-op s (warm) | exit full / no-op "
          "| errors full / no-op | no-op touched (lstat) | no-op touched (tool's report) |")
    print("|---|---|---:|---:|---:|---|---|---|---|")
    for r in b.results:
        print(f"| {r.kind} | {r.tool} | {r.full.seconds:.2f} | {r.noop.seconds:.2f} "
              f"| {r.noop_warm.seconds:.2f} | {r.full.rc} / {r.noop.rc} "
              f"| {r.errors_full} / {r.errors_noop} | {r.touched.count} | {r.reported} |")
    print("\n| drive | full ratio | no-op ratio (cold) | no-op ratio (warm) |")
    print("|---|---:|---:|---:|")
    pairs = []
    for kind in dict.fromkeys(r.kind for r in b.results):
        by = {r.tool: r for r in b.results if r.kind == kind}
        if "twofold" in by and "rsync" in by:
            t, q = by["twofold"], by["rsync"]
            pairs.append((kind, t, q))
            print(f"| {kind} | {t.full.seconds / q.full.seconds:.2f}x "
                  f"| {t.noop.seconds / q.noop.seconds:.2f}x "
                  f"| {t.noop_warm.seconds / q.noop_warm.seconds:.2f}x |")
    print("\nEntries the cold no-op touched, from lstat before/after (catalog.sqlite* left out):")
    for r in b.results:
        print(f"- {r.kind} {r.tool}: {r.touched.text()}")
    print("\nListing noise (two listings, nothing run, cache dropped between; these fields of "
          "these paths are not compared):")
    for r in b.results:
        print(f"- {r.kind} {r.tool}: {r.noise.text()}")
    print("\nGoals (issue 3):")
    for kind, t, q in pairs:
        full, noop = t.full.seconds / q.full.seconds, t.noop.seconds / q.noop.seconds
        print(f"- {kind}: no-op <= {GOAL_NOOP}x rsync (cold): {noop:.2f}x "
              f"{verdict(noop <= GOAL_NOOP)}; zero entries touched: {t.touched.count} "
              f"{verdict(t.touched.count == 0)}; full <= {GOAL_FULL}x rsync: {full:.2f}x "
              f"{verdict(full <= GOAL_FULL)}")


def prepare(workdir: str) -> None:
    """An empty workdir."""
    if os.path.exists(workdir):
        if os.listdir(workdir) and not os.path.exists(os.path.join(workdir, MARKER)):
            raise SystemExit(f"foreign_targets: {workdir} exists, is not empty and was not "
                             "made by this benchmark; choose another --workdir")
        for name in os.listdir(workdir):  # a drive left mounted by a killed run
            if name.startswith("mnt-"):
                subprocess.run(["umount", os.path.join(workdir, name)], check=False,
                               capture_output=True)
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    open(os.path.join(workdir, MARKER), "w").close()


def main(argv: list[str] | None = None) -> int:
    """Make the drives, run both tools, print the results."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=47_000,
                    help="regular files from gentree (47000: ~50,000 entries in all)")
    ap.add_argument("--total-size", default="500M", help="bytes in the tree (500M)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the tree (1)")
    ap.add_argument("--drives", default="exfat,ntfs", help="drive kinds (exfat,ntfs)")
    ap.add_argument("--drive-size", default="",
                    help="size of each drive image (default: 2.5x the tree + 64 KiB a file, "
                         "at least 1G)")
    ap.add_argument("--workdir", default="/tmp/twofold-foreign",
                    help="tree, images and mount points (/tmp/twofold-foreign)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (drives unmounted)")
    ap.add_argument("--twofold-args", default="", help="extra arguments for `twofold backup`")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="run the working tree's src/ rather than an export of HEAD's")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("foreign_targets: needs root (loop devices, FUSE mounts, "
                         "dropping the page cache)")
    kinds = [k.strip() for k in args.drives.split(",") if k.strip()]
    for kind in kinds:
        if kind not in TOOLS:
            raise SystemExit(f"foreign_targets: unknown drive kind {kind!r}")
        for name in (*TOOLS[kind], "rsync"):
            tool(name)
    total = gentree.parse_size(args.total_size)
    # exFAT allocates a 32 KiB cluster per file on drives of this size: room for two each
    size = gentree.parse_size(args.drive_size) if args.drive_size else max(
        1 << 30, total * 5 // 2 + args.files * 64 * 1024)
    workdir = os.path.abspath(args.workdir)
    prepare(workdir)
    env, version = code_under_test(workdir, args.pin)
    twofold_cmd, how = find_twofold(env)
    b = Foreign(workdir, twofold_cmd, shlex.split(args.twofold_args), env, size)
    try:
        print("Machine:", "; ".join(machine_facts(workdir, version)))
        print(f"Start: {load_text()} on {os.cpu_count()} CPUs; {time.strftime('%F %T')}")
        print(f"Drivers: {first_line([tool('mount.exfat-fuse'), '-V'])}; "
              f"{first_line([tool('ntfs-3g'), '--version'])}")
        print(f"twofold: {how}, `SRC --to MNT --set {SET} --json {args.twofold_args}`; "
              f"rsync: `rsync {' '.join(RSYNC_FLAGS)} SRC/ MNT/home/`", flush=True)
        s = gentree.generate(b.src, args.files, total, args.seed)
        odd = add_odd_names(b.src, max(20, args.files // 500), args.seed)
        n = count_entries(b.src)
        print(f"Tree: gentree {s.files} files, {s.bytes / MB:.0f} MiB, {s.hardlinks} hard "
              f"links, {s.symlinks} symlinks; plus {odd} files with names Windows forbids or "
              f"case twins; in all {sum(n.values())} entries {n}; drives of "
              f"{size / MB:.0f} MiB", flush=True)
        for kind in kinds:
            for who in ("rsync", "twofold"):
                b.measure(kind, who)
        for note in b.notes:
            print("Note:", note)
        if b.cold:
            print("Page cache: dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before each "
                  "cold run")
        print(f"End: {load_text()}; {time.strftime('%F %T')}")
        report(b)
        for r in b.results:
            if r.tool == "rsync":
                first = [ln for ln in r.full.stdout.splitlines() if ln.startswith("rsync")][:6]
                print(f"\nrsync on {r.kind}, first error lines of the full run:")
                print("\n".join("  " + ln for ln in first))
            else:
                print(f"\ntwofold on {r.kind}, full run: exit {r.full.rc}; "
                      f"{stats_text(r.full.stdout)}; output tail: {r.full.stdout[-600:]!r}")
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
