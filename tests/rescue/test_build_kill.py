"""A kill -9 of `rescue build` leaves no half ISO, temp file, work tree, mount or running
step behind (the reaper cleans up), and the next build works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rescue.conftest import CACHE, Clock
from twofold.core.progress import NullProgress

WAIT_S = 600  # bounds on waiting for a loaded machine, not measurements

REAPED = """
import subprocess, sys
from pathlib import Path
from twofold.rescue import host
from twofold.rescue.reaper import Reaper

reaper = Reaper()
host.STEP_WATCHERS.append(reaper.tell)
half = reaper.path(Path(sys.argv[1]) / ".out.iso.tmp-1")
half.write_bytes(b"half an ISO")
work = reaper.path(Path(sys.argv[1]) / "build-1")
(work / "root/etc").mkdir(parents=True)
print(reaper.proc.pid, flush=True)
if sys.argv[2] == "done":
    reaper.done()
else:
    host.run(["sh", "-c", f"sleep 600 & echo $! >> {sys.argv[3]}; sleep 600"],
             "a step that never ends")
"""


def _state(pid: int) -> str:
    """A process's state letter; "" when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat[stat.rfind(")") + 2]


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while _state(pid) not in ("", "Z") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _state(pid) in ("", "Z"), f"process {pid} still runs"


def _processes_naming(text: str) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    args = f.read().decode(errors="replace").replace("\0", " ")
            except OSError:
                continue
            if text in args:
                found.append(args)
    return found


@pytest.mark.parametrize("ending", ["killed", "done"])
def test_reaper_cleans_up_after_a_killed_build_only(tmp_path: Path, ending: str) -> None:
    builds = subprocess.Popen(
        [sys.executable, "-c", REAPED, str(tmp_path), ending, str(tmp_path / "out.txt")],
        stdout=(tmp_path / "out.txt").open("w"), start_new_session=True)
    deadline = time.monotonic() + WAIT_S
    while len((tmp_path / "out.txt").read_text().split()) < (2 if ending == "killed" else 1):
        assert builds.poll() is None or ending == "done", "the build ended early"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    reaper = int((tmp_path / "out.txt").read_text().split()[0])
    if ending == "killed":
        builds.send_signal(signal.SIGKILL)
    builds.wait()
    _wait_gone(reaper)
    left = sorted(p.name for p in tmp_path.iterdir())
    if ending == "done":  # a build that ended by itself cleaned up itself; the reaper did not
        assert left == [".out.iso.tmp-1", "build-1", "out.txt"]
        return
    assert left == ["out.txt"]
    sleeper = int((tmp_path / "out.txt").read_text().split()[1])  # started by the step
    assert _state(sleeper) in ("", "Z"), "the killed build's step still runs"


def _mounts_below(folder: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(folder))]


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_kill_9_during_the_packages_stage_leaves_nothing(rescue_iso: Path,
                                                         tmp_path: Path) -> None:
    """Killed while mmdebstrap has the host's /proc, /sys and /dev mounted in the new root
    (the stage that leaves the most behind); a build of its own cache, with the .debs of
    the test cache, so the ISO cache the other tests use is not touched."""
    if os.environ.get("TWOFOLD_RESCUE_ISO"):
        pytest.skip("TWOFOLD_RESCUE_ISO names an ISO built elsewhere")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "apt").symlink_to(CACHE / "apt")  # read by the build; it dies before writing
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "twofold-rescue.iso"
    log = tmp_path / "build.log"
    build = subprocess.Popen(
        [sys.executable, "-m", "twofold", "rescue", "build", "--out", str(out),
         "--cache", str(cache)], stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    deadline = time.monotonic() + WAIT_S
    while not _mounts_below(cache / "work"):
        assert build.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    assert "packages..." in log.read_text()
    [reaper] = [int(p) for p in os.listdir("/proc") if p.isdigit()
                and _parent(int(p)) == build.pid and "twofold.rescue.reaper" in _args(int(p))]
    build.send_signal(signal.SIGKILL)
    build.wait()
    _wait_gone(reaper)
    assert list(out_dir.iterdir()) == []  # no ISO, half or whole, and no temp file
    assert list((cache / "work").iterdir()) == []
    assert list((cache / "isos").iterdir()) == []
    assert _mounts_below(cache) == []
    assert _processes_naming(str(cache)) == []  # mmdebstrap, apt, dpkg: all gone
    from twofold.rescue.build import build as build_iso

    r = build_iso(str(out), None, CACHE, NullProgress(), Clock())  # the next build works
    assert r.cached and out.read_bytes() == rescue_iso.read_bytes()
    assert [p.name for p in out_dir.iterdir()] == [out.name]


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    return int(stat[stat.rfind(")") + 2:].split()[1])


def _args(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""
