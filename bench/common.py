"""Helpers shared by the benchmarks: timing a command with its peak memory, dropping the
page cache, pinning HEAD's src/ so others' edits do not change the code mid-run, finding
the twofold CLI, reading its --json stats, describing the machine.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass

MB = 1 << 20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHIM = """
import argparse, json, sys
from twofold.backup.engine import BackupOptions, backup
from twofold.core.progress import NullProgress
from twofold.jobs.clock import SystemClock
ap = argparse.ArgumentParser()
ap.add_argument("sources", nargs="+")
ap.add_argument("--to", required=True)
ap.add_argument("--set", required=True)
ap.add_argument("--json", action="store_true")
ap.add_argument("--workers", type=int, default=4)
a = ap.parse_args()
r = backup(a.sources, a.to, a.set, BackupOptions(workers=a.workers), SystemClock(),
           NullProgress())
print(json.dumps({"stats": r.stats.as_dict(), "warnings": r.warnings}))
sys.exit(3 if r.stats.skipped else 0)
"""


# measuring one process ----------------------------------------------------------------------

@dataclass
class Measure:
    """One run of one tool."""

    seconds: float
    peak_mb: float  # peak RSS of the largest process in the tree
    cpu_s: float  # user + system CPU seconds of all its processes (0 when unknown)
    tree_mb: float  # largest sampled sum of PSS (else RSS) over the process tree
    sync_s: float  # a `sync` right after the run: data the tool left unflushed
    rc: int
    stdout: str


def _memory(p: int, page: int) -> int:
    """Proportional set size of a process (bytes): each page shared by n processes (forked
    workers share most of their parent's) counts 1/n. Its RSS where PSS is not shown."""
    try:
        with open(f"/proc/{p}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    with open(f"/proc/{p}/statm") as f:
        return int(f.read().split()[1]) * page


def _tree_rss(pid: int, skip_root: bool) -> int:
    """Memory (PSS, else RSS; bytes) of pid's descendants (and of pid unless skip_root)."""
    total, todo, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            if p != pid or not skip_root:
                total += _memory(p, page)
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


def _hwm_kb(pid: int) -> int:
    """Peak RSS (VmHWM, KiB) of one process so far, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


TIME = "/usr/bin/time"


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> Measure:
    """Run cmd, timing it and recording its peak memory.

    The peak comes from GNU time's %M (ru_maxrss of the process it forks) when
    /usr/bin/time exists: ru_maxrss of a process we fork ourselves would include this
    benchmark's own peak, which survives exec. Without it, VmHWM is sampled.
    """
    use_time = os.access(TIME, os.X_OK)
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        full = [TIME, "-f", "%M %U %S", "-o", rss.name, *cmd] if use_time else cmd
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, env=env)
        tree, hwm = [0], [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                tree[0] = max(tree[0], _tree_rss(proc.pid, skip_root=use_time))
                if not use_time:
                    hwm[0] = max(hwm[0], _hwm_kb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        seconds = time.perf_counter() - t0
        stop.set()
        sampler.join()
        t1 = time.perf_counter()
        os.sync()
        sync_s = time.perf_counter() - t1
        out.seek(0)
        text = out.read().decode(errors="replace")
        peak_kb, cpu = float(hwm[0]), 0.0
        if use_time:
            # the last line; earlier ones say "Command exited with non-zero status"
            last = (rss.read().strip().splitlines() or [""])[-1].split()
            if len(last) == 3:
                peak_kb, cpu = float(last[0]), float(last[1]) + float(last[2])
    return Measure(seconds, peak_kb / 1024, cpu, tree[0] / MB, sync_s, rc, text)


def drop_caches() -> str | None:
    """Flush and drop the page cache; None when done, else why not."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as err:
        return f"cannot drop the page cache ({err.strerror}); cold figures are warm"
    return None


def partition(dev: str, number: int = 1) -> str:
    """Partition `number`'s device of a loop device, once it has appeared (this kernel
    makes none on loop devices by itself: partx adds them)."""
    for _ in range(100):
        if os.path.exists(f"{dev}p{number}"):
            return f"{dev}p{number}"
        subprocess.run(["partx", "-a", dev], capture_output=True, check=False)
        time.sleep(0.05)
    raise SystemExit(f"{dev}p{number} did not appear")


def pin_source(workdir: str) -> tuple[dict[str, str], str]:
    """Export src/ of the committed HEAD into the workdir; an env that imports it first.

    Others may edit src/ while a long run goes on; the venv's editable install would pick
    their half-done changes up between phases. PYTHONPATH puts the export ahead of it.
    """
    commit = output(["git", "-C", REPO, "rev-parse", "HEAD"])
    if commit == "?":
        raise SystemExit("bench: pinning needs a git checkout; use --no-pin")
    data = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", commit, "src",
                           "setup.py", "pyproject.toml"], check=True, capture_output=True).stdout
    dest = os.path.join(workdir, "twofold-src")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    # Byte-compiled ahead, as `pip install` does: an environment that forbids writing
    # bytecode (PYTHONDONTWRITEBYTECODE) would otherwise compile every module every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(dest, "src")],
                   check=True, capture_output=True)
    # The walk in C, built as `pip install` builds it (optional there, reported here).
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest,
                   capture_output=True, check=False)
    env = {**os.environ, "PYTHONPATH": os.path.join(dest, "src")}
    walk = subprocess.run([sys.executable, "-c", "from twofold.fsinfo import fastwalk; "
                           "print(fastwalk.available())"], env=env, capture_output=True,
                          text=True, check=False).stdout.strip()
    native = "walk in C" if walk == "True" else "walk in Python: the C module was not built"
    return env, f"{commit[:7]} (src/ of that commit, pinned, byte-compiled; {native})"


def find_twofold(env: dict[str, str] | None) -> tuple[list[str], str]:
    """The twofold CLI next to this Python, or an engine shim when the CLI does not run."""
    cli = os.path.join(os.path.dirname(sys.executable), "twofold")
    try:
        ok = subprocess.run([cli, "backup", "--help"], check=False, capture_output=True,
                            timeout=60, env=env).returncode == 0
    except OSError:
        ok = False
    if ok:
        return [cli, "backup"], f"CLI {cli}"
    return [sys.executable, "-c", SHIM], "engine shim (the CLI did not run)"


def output(cmd: list[str]) -> str:
    """What a command prints, or '?' when it fails."""
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


def machine_facts(workdir: str, version: str) -> list[str]:
    """nproc, memory, file system of the workdir, versions."""
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    fs = output(["findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", workdir])
    rsync = output(["rsync", "--version"]).split("\n")[0]
    return [f"nproc: {os.cpu_count()}", f"memory: {mem}", f"workdir file system: {fs}",
            f"kernel: {platform.release()}", f"python: {platform.python_version()}",
            f"rsync: {rsync}", f"twofold: {version}"]


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


def twofold_stats(stdout: str) -> dict[str, object] | None:
    """The "stats" object of twofold's --json output, None when there is none."""
    try:
        start = stdout.index("{")
        stats = json.loads(stdout[start:])["stats"]
    except (ValueError, KeyError, TypeError):
        return None
    return stats if isinstance(stats, dict) else None


def stats_text(stdout: str) -> str:
    """twofold's --json stats in one line."""
    s = twofold_stats(stdout)
    if s is None:
        return "no JSON from twofold"
    keys = ("new", "changed", "metadata", "moved", "deleted", "unchanged", "skipped")
    return ", ".join(f"{k} {s[k]}" for k in keys if k in s)


def code_under_test(workdir: str, pin: bool) -> tuple[dict[str, str] | None, str]:
    """The environment to run twofold in and a description of the code it runs.

    pin: HEAD's src/ exported into the workdir (see pin_source); else the working tree.
    Either way twofold keeps its state (logs, the drive each target was found on) in the
    workdir, never in the home folder: a bench that empties its target and runs again is
    not a drive gone missing.
    """
    state = {"TWOFOLD_STATE_DIR": os.path.join(workdir, "state")}
    if pin:
        env, version = pin_source(workdir)
        return {**(env or os.environ), **state}, version
    version = output(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    if output(["git", "-C", REPO, "status", "--porcelain", "--", "src"]) != "?":
        version += " + uncommitted changes in src/"
    return {**os.environ, **state}, version + " (working tree)"


def load_text() -> str:
    """Load averages and CPU pressure now, for the record next to a figure."""
    one, five, fifteen = os.getloadavg()
    text = f"load average {one:.2f} {five:.2f} {fifteen:.2f}"
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()
        text += f", cpu pressure {some[1]}"
    except (OSError, IndexError):
        pass
    return text
