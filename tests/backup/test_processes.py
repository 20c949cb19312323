"""Clean ends and honest alarms: a backup killed (-9) half-way, or one that ends, leaves no
process behind (planning helpers, copy workers, fork server, resource tracker); verify
during a run reports no damage; a drive whose FUSE driver died gets the drive-gone
message."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.cli.app import app
from twofold.core.errors import TargetError

from ..drives import foreign_drive
from .conftest import SET, T0, FakeClock, run_backup, run_verify, write_file

RUNNER = Path(__file__).with_name("childrun.py")
WAIT = 120.0  # seconds: how long a stopped or dying process may take (a loaded machine)
MANY = 20_500  # entries: planproc.ranges plans in two processes from 2 * MIN_ROWS rows


def _tree(src: Path, files: int = 300) -> None:
    for i in range(files):
        write_file(src / f"d{i % 7}" / f"f{i:04d}.bin", os.urandom(20_000 + i))


def _session(sid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command) of the processes of session `sid` that are not zombies."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append((int(name), fields[0], cmd[:120]))
    return out


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _until(what: str, check: object) -> None:
    end = time.monotonic() + WAIT
    while not check():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"still not {what} after {WAIT} s")
        time.sleep(0.05)


def _start_stopped(src: Path, target: Path, tmp_path: Path, *, thread: bool,
                   stop_at: int = 150) -> subprocess.Popen[str]:
    """A backup run in a session of its own, stopped (SIGSTOP) at its `stop_at`th counted
    file-system call, with copy workers running."""
    cfg = {"sources": [str(src)], "target": str(target), "set": SET, "start_ns": T0,
           "kill_at": stop_at, "stop": True, "thread": thread, "batch_files": 40,
           "log": str(tmp_path / "calls.log")}
    proc = subprocess.Popen([sys.executable, str(RUNNER), json.dumps(cfg)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, cwd=Path(__file__).parents[2])
    _until("stopped", lambda: _state(proc.pid) in ("T", "t", "gone", "Z"))
    if _state(proc.pid) not in ("T", "t"):
        raise AssertionError(f"the run did not stop half-way: {proc.communicate()}")
    return proc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("thread", [False, True], ids=["fork", "forkserver"])
def test_kill_9_leaves_no_process(tmp_path: Path, thread: bool) -> None:
    src = tmp_path / "src"
    _tree(src)
    target = tmp_path / "target"
    target.mkdir()
    proc = _start_stopped(src, target, tmp_path, thread=thread)
    try:
        helpers = [p for p in _session(proc.pid) if p[0] != proc.pid]
        assert helpers, "the run had no helper processes to leave behind"
        if thread:
            assert any("forkserver" in cmd for _pid, _s, cmd in helpers), helpers
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    try:
        _until("gone", lambda: _session(proc.pid) == [])
    finally:
        for pid, _state, _cmd in _session(proc.pid):  # a failed test leaves nothing either
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_verify_during_a_run_reports_no_damage(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, 120)
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, FakeClock(start_ns=T0 - 10**12))
    for i in range(0, 120, 2):  # half the files change: the next run replaces them
        write_file(src / f"d{i % 7}" / f"f{i:04d}.bin", os.urandom(30_000))
    proc = _start_stopped(src, target, tmp_path, thread=False, stop_at=110)
    try:  # (the run goes on whatever happens here: SIGCONT below)
        with pytest.raises(TargetError, match="in use"):
            run_verify(target)
        res = CliRunner().invoke(app, ["verify", "--from", str(target), "--set", SET])
        assert res.exit_code == 1 and "in use" in res.output and "damaged" not in res.output
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        out, errors = proc.communicate()
    assert proc.returncode == 0, (out, errors)
    assert run_verify(target).problems == []


@pytest.fixture
def dead_fuse_drive(tmp_path: Path) -> object:
    """An exFAT drive (exfat-fuse) holding a backup, whose driver is then killed."""
    with foreign_drive("exfat", tmp_path, size="64M") as mnt:
        src = tmp_path / "src"
        _tree(src, 20)
        run_backup(src, mnt, FakeClock())
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit() and "exfat" in _cmd(n)
                and str(mnt) in _cmd(n)]
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
        _until("dead", lambda: _state(pids[0]) in ("gone", "Z"))
        yield src, mnt


def _cmd(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_dead_fuse_drive_is_said_to_be_gone(dead_fuse_drive: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    src, mnt = dead_fuse_drive
    try:
        os.listdir(mnt)
    except OSError as err:
        assert err.errno == 107  # ENOTCONN: the state this test is about
    else:
        pytest.skip("this kernel does not report a dead FUSE drive as ENOTCONN")
    runner = CliRunner()
    for args in (["backup", str(src), "--to", str(mnt), "--set", SET],
                 ["verify", "--from", str(mnt), "--set", SET],
                 ["restore", "--from", str(mnt), "--set", SET, "--to", str(tmp_path / "r")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, (args, res.output)
        assert "is gone" in res.output, (args, res.output)
        assert "Traceback" not in res.output


KILLED_RESTORE = """
import os, signal, sys
from datetime import UTC
import twofold.sets.copy as copy_mod
from twofold.backup.restore import restore
from twofold.core.progress import NullProgress
real = copy_mod._write_all
calls = 0
def write_then_die(fd, data):
    global calls
    calls += 1
    real(fd, data[: len(data) // 2])
    if calls == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    real(fd, data[len(data) // 2:])
copy_mod._write_all = write_then_die
restore(sys.argv[1], "main", sys.argv[2], [], None, False, NullProgress(), UTC)
"""


@pytest.mark.parametrize("at", [1, 5])
def test_killed_restore_leaves_no_partial_file(tmp_path: Path, at: int) -> None:
    """A restore killed half-way through writing a file leaves only whole files in the
    destination: the file being written has no name until its BLAKE3 is checked."""
    src = tmp_path / "src"
    _tree(src, 12)
    target = tmp_path / "target"
    target.mkdir()
    run_backup(src, target, FakeClock())
    dest = tmp_path / "dest"
    done = subprocess.run([sys.executable, "-c", KILLED_RESTORE, str(target), str(dest),
                           str(at)], capture_output=True, text=True, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    restored = [p for p in dest.rglob("*") if p.is_file()]
    assert len(restored) == at - 1  # those written before the kill
    for p in restored:
        assert p.read_bytes() == (src / p.relative_to(dest / "src")).read_bytes(), p


def _cli_leaves_nothing(tmp_path: Path, src: Path, target: Path, tty: bool) -> None:
    """Run `python -m twofold backup` in a session of its own (on a terminal, which draws
    progress bars, when `tty`); once it has exited, no process of that session may still
    be alive (planning helpers, copy workers, a fork server, a resource tracker)."""
    extra = [] if tty else ["--json"]
    leader, follower = pty.openpty() if tty else (-1, subprocess.PIPE)
    proc = subprocess.Popen([sys.executable, "-m", "twofold", "backup", str(src), "--to",
                             str(target), "--set", SET, *extra], stdout=follower,
                            stderr=follower, start_new_session=True, cwd=tmp_path)
    out = bytearray()
    if tty:
        assert isinstance(follower, int)
        os.close(follower)
        with contextlib.suppress(OSError):  # EIO once the run has closed the terminal
            while chunk := os.read(leader, 65536):
                out += chunk
        os.close(leader)
        proc.wait(timeout=WAIT)
    else:
        out += proc.communicate(timeout=WAIT)[0]
    left = _session(proc.pid)
    for pid, _state, _cmd in left:
        os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    assert left == [], f"alive after the run ended: {left}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("tty", [False, True], ids=["json", "terminal"])
def test_runs_leave_no_process_behind(tmp_path: Path, tty: bool) -> None:
    src = tmp_path / "src"
    _tree(src, 200)
    for i in range(MANY):  # enough catalog rows for planning in several processes
        write_file(src / "many" / f"d{i % 50}" / f"e{i}", b"")
    target = tmp_path / "target"
    target.mkdir()
    _cli_leaves_nothing(tmp_path, src, target, tty)  # a full run: copy workers
    _cli_leaves_nothing(tmp_path, src, target, tty)  # a no-op
    write_file(src / "d0" / "changed.bin", os.urandom(5000))
    _cli_leaves_nothing(tmp_path, src, target, tty)  # one file to copy
