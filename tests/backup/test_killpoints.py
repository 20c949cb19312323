"""kill -9 at many points of a run: current/ keeps whole files, old runs stay restorable,
and the next run finishes the job.

The run under test goes in a child process (childrun.py) that counts its file-system
calls and catalog commits and SIGKILLs itself before call N. A counting run first learns
how many calls a run makes; the kill points are then spread over them (seeded), with every
kind of call among them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import (
    HAS_XATTR,
    SET,
    FakeClock,
    Snapshot,
    catalog_rows,
    fs,
    make_sparse,
    run_backup,
    run_restore,
    run_verify,
    set_dir,
    set_xattr,
    settle_dirs,
    snapshot,
    snapshot_diff,
    write_file,
)

POINTS = 24
SEED = 20261126
RUNNER = Path(__file__).with_name("childrun.py")
BATCH_FILES = 40
BATCH_BYTES = 2 << 20
USE_CLI = importlib.util.find_spec("twofold.cli.app") is not None  # else the Python API


def _build_before(src: Path, rng: random.Random) -> None:
    """About 250 entries: small files in folders, a few larger ones, links."""
    base = fs(src)
    when = 1_760_000_000 * 10**9
    for d in range(12):
        for f in range(15):
            write_file(os.path.join(base, b"docs/d%02d/f%03d.txt" % (d, f)),
                       rng.randbytes(rng.randrange(0, 3000)), mtime_ns=when + d * 1000 + f)
    for f in range(20):
        write_file(os.path.join(base, b"old/o%02d.txt" % f), rng.randbytes(500), mtime_ns=when)
    for f in range(3):
        write_file(os.path.join(base, b"media/m%d.bin" % f), rng.randbytes(600_000),
                   mtime_ns=when)
    os.symlink(b"../docs/d00/f000.txt", os.path.join(base, b"media/link"))
    write_file(os.path.join(base, b"media/hard-1"), b"linked\n" * 50)
    os.link(os.path.join(base, b"media/hard-1"), os.path.join(base, b"media/hard-2"))
    if HAS_XATTR:
        set_xattr(os.path.join(base, b"docs/d00/f001.txt"), "user.k", b"v1")
    settle_dirs(src)


def _change(src: Path, rng: random.Random) -> None:
    """Work for several batches: 750 new files, big new files, edits, deletes, renames..."""
    base = fs(src)
    j = lambda *parts: os.path.join(base, *parts)  # noqa: E731
    for d in range(30):
        for f in range(25):
            write_file(j(b"new/n%02d/g%03d.txt" % (d, f)), rng.randbytes(rng.randrange(1, 2000)))
    for f in range(3):
        write_file(j(b"new/big%d.bin" % f), rng.randbytes((5 << 19) + f))  # 2.5 MiB each
    write_file(j(b"media/m0.bin"), rng.randbytes(700_000))
    for d in range(10):
        write_file(j(b"docs/d%02d/f%03d.txt" % (d, 3)), rng.randbytes(rng.randrange(3001, 4000)))
        write_file(j(b"docs/d%02d/f%03d.txt" % (d, 4)), b"")
        os.unlink(j(b"docs/d%02d/f%03d.txt" % (d, 5)))
    shutil.rmtree(j(b"docs/d11"))
    os.rename(j(b"old"), j(b"archive"))
    for d in range(5):
        os.rename(j(b"docs/d%02d/f%03d.txt" % (d, 6)), j(b"docs/d%02d/renamed.txt" % d))
        os.chmod(j(b"docs/d%02d/f%03d.txt" % (d, 7)), 0o600)
    os.unlink(j(b"media/link"))
    os.symlink(b"m1.bin", j(b"media/link"))
    os.link(j(b"docs/d01/f001.txt"), j(b"media/hard-3"))
    os.makedirs(j(b"new/empty"))
    write_file(j(b"new/caf\xe9.txt"), b"not utf-8\n")
    make_sparse(j(b"new/sparse.img"), 3 << 20, {1 << 20: b"data" * 100})
    if HAS_XATTR:
        set_xattr(j(b"docs/d00/f001.txt"), "user.k", b"v2")


@dataclass
class KillSetup:
    """A target after run 1, the source as changed since, and where to kill run 2."""

    src: Path
    base_target: Path
    before: Snapshot
    after: Snapshot
    start_ns: int
    points: list[tuple[int, str]]
    total: int


def _child(src: Path, target: Path, start_ns: int, kill_at: int,
           log: Path) -> subprocess.CompletedProcess[str]:
    cfg = {"sources": [str(src)], "target": str(target), "set": SET, "start_ns": start_ns,
           "kill_at": kill_at, "log": str(log), "batch_files": BATCH_FILES,
           "batch_bytes": BATCH_BYTES, "cli": USE_CLI}
    home = log.parent / "xdg"  # no user config or state leaks in
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_STATE_HOME": str(home / "state"), "XDG_CACHE_HOME": str(home / "cache")}
    env.pop("TWOFOLD_CONFIG", None)
    env.pop("TWOFOLD_STATE_DIR", None)  # the XDG state folder above, new per child
    return subprocess.run([sys.executable, str(RUNNER), json.dumps(cfg)], capture_output=True,
                          text=True, check=False, timeout=120, env=env)


def _choose(kinds: list[str], rng: random.Random) -> list[tuple[int, str]]:
    """POINTS distinct call numbers (1-based): the first and last call, one of each kind of
    call, the rest one per stratum of the run."""
    total = len(kinds)
    chosen = {1, total}
    for kind in sorted(set(kinds)):
        chosen.add(rng.choice([i + 1 for i, k in enumerate(kinds) if k == kind]))
    strata = POINTS - len(chosen)
    for s in range(strata):
        lo, hi = 1 + s * total // strata, (s + 1) * total // strata
        candidates = [n for n in range(lo, hi + 1) if n not in chosen]
        if candidates:
            chosen.add(rng.choice(candidates))
    while len(chosen) < POINTS:
        chosen.add(rng.randrange(1, total + 1))
    return [(n, kinds[n - 1]) for n in sorted(chosen)][:POINTS]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> KillSetup:
    tmp = tmp_path_factory.mktemp("kill")
    rng = random.Random(SEED)
    src = tmp / "src"
    _build_before(src, rng)
    base = tmp / "base-target"
    base.mkdir()
    clock = FakeClock()
    assert run_backup(src, base, clock).run_id == 1
    before = snapshot(src)
    _change(src, rng)
    after = snapshot(src)

    counting = tmp / "counting-target"
    shutil.copytree(base, counting, symlinks=True)
    log = tmp / "count.log"
    # later than run 1 and than the system clock, which the command line reads
    start_ns = max(clock.t, time.time_ns()) + 86_400 * 10**9
    proc = _child(src, counting, start_ns, 0, log)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kinds = log.read_text().split()
    shutil.rmtree(counting)
    assert len(kinds) > 1000, f"the run is too small to kill well: {len(kinds)} calls"
    # File data is written by the copy workers (forked processes), not by the run's own
    # process: its kill points are the renames, links and catalog commits, taken while
    # the workers copy the next batch.
    assert {"rename", "commit", "committed", "link", "symlink"} <= set(kinds)
    points = _choose(kinds, rng)
    assert len({n for n, _ in points}) >= 20
    return KillSetup(src, base, before, after, start_ns, points, len(kinds))


def _partial_problems(current: Path, before: Snapshot, after: Snapshot) -> list[str]:
    """Paths of current/ that are neither the old nor the new version of themselves."""
    problems = []
    for path, node in snapshot(current).items():
        shown = path.decode("utf-8", "backslashreplace")
        versions = [s[path] for s in (before, after) if path in s]
        if not versions:
            problems.append(f"current/{shown}: a stray {node.type}, in neither version")
        elif node.type not in {v.type for v in versions}:
            problems.append(f"current/{shown}: a {node.type}, in neither version")
        elif node.type == "file" and node.blake3 not in {v.blake3 for v in versions}:
            problems.append(f"current/{shown}: content ({node.size} bytes) is neither the "
                            "old nor the new version")
        elif node.type == "symlink" and node.target not in {v.target for v in versions}:
            problems.append(f"current/{shown}: symlink to {node.target!r}, neither version")
    return problems


def _copy_target(base: Path, dest: Path) -> None:
    """A copy of a target that keeps hard links, xattrs and times (as current/ has them)."""
    subprocess.run(["cp", "-a", str(base), str(dest)], check=True)


def _kill(setup: KillSetup, target: Path, start_ns: int, n: int, log: Path, where: str) -> str:
    """Run the child until it kills itself before call `n`; the kind of that call."""
    proc = _child(setup.src, target, start_ns, n, log)
    assert proc.returncode == -signal.SIGKILL, \
        f"{where}: the child was not killed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    number, kind = log.read_text().split()
    assert number == str(n)
    return kind


def _restore_problems(target: Path, dest: Path, name: str, want: Snapshot,
                      when: str) -> list[str]:
    label = f"restore as of run 1 {when}"
    try:
        res = run_restore(target, dest, as_of="1")
    except Exception as err:  # every failure of a kill point is reported
        return [f"{label}: raised {err!r}"]
    out = [f"{label}: {i.kind} {i.message}" for i in res.issues]
    out += [f"{label}: {d}" for d in snapshot_diff(snapshot(dest / name), want)]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("index", range(POINTS))
def test_kill_then_recover(setup: KillSetup, index: int, tmp_path: Path) -> None:
    """Kill run 2 at one point (odd points: kill its recovery too), then run again."""
    n, kind = setup.points[index]
    where = f"kill before call {n}/{setup.total} ({kind})"
    target = tmp_path / "target"
    _copy_target(setup.base_target, target)
    sd = set_dir(target)
    current = sd / "current" / setup.src.name
    day = 86_400 * 10**9

    _kill(setup, target, setup.start_ns, n, tmp_path / "kill.log", where)
    failures = [f"current/ after the kill: {p}"
                for p in _partial_problems(current, setup.before, setup.after)]
    failures += _restore_problems(target, tmp_path / "restore-1", setup.src.name,
                                  setup.before, "after the kill")
    if index % 2:
        # The next run makes 3 mkdir calls (its folders exist), unlinks the dead run's lock,
        # then redoes the pending operations: kill it halfway through those.
        pending = len(catalog_rows(target, "SELECT * FROM pending"))
        m = 5 + pending // 2
        where += f", then before call {m} of the next run ({pending} pending operations)"
        kind2 = _kill(setup, target, setup.start_ns + day, m, tmp_path / "kill2.log", where)
        where += f" ({kind2})"
        failures += [f"current/ after the second kill: {p}"
                     for p in _partial_problems(current, setup.before, setup.after)]

    try:
        result = run_backup(setup.src, target, FakeClock(setup.start_ns + 2 * day))
    except Exception as err:
        pytest.fail(f"{where}: the next run failed: {err!r}\n" + _summary(failures))
    states = dict(catalog_rows(target, "SELECT id, state FROM runs"))
    if states.get(result.run_id) != "complete" or states.get(1) != "complete":
        failures.append(f"runs: states after the next run are {states}")
    if catalog_rows(target, "SELECT * FROM pending"):
        failures.append("catalog: pending operations left after a completed run")
    failures += [f"current/ after the next run: {d}"
                 for d in snapshot_diff(snapshot(current), setup.after)]
    left = os.listdir(sd / ".tmp") if (sd / ".tmp").exists() else []  # made when needed
    if left:
        failures.append(f".tmp/: not emptied: {left[:5]}")
    failures += [f"verify: {p.kind} {p.message}" for p in run_verify(target).problems]
    failures += _restore_problems(target, tmp_path / "restore-2", setup.src.name,
                                  setup.before, "after the next run")

    assert not failures, f"{where}: {len(failures)} problems\n" + _summary(failures)


def _summary(failures: list[str]) -> str:
    """Problems grouped by what was checked, a few examples each."""
    groups: dict[str, list[str]] = {}
    for line in failures:
        head, _, rest = line.partition(": ")
        groups.setdefault(head, []).append(rest)
    out = []
    for head, items in groups.items():
        out.append(f"  {head}: {len(items)} problem(s), e.g.")
        out.extend(f"      {item[:300]}" for item in items[:4])
    return "\n".join(out)
