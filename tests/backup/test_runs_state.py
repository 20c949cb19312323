"""`twofold runs` tells a running run from one whose process is gone: the set's lock says
which, so a killed run shows as interrupted at once, not at the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from twofold.cli.app import app

runner = CliRunner()


def _states(target: Path) -> list[str]:
    got = runner.invoke(app, ["runs", "--from", str(target), "--json"])
    assert got.exit_code == 0, got.output
    return [r["state"] for r in json.loads(got.output)["runs"]]


def test_a_killed_run_is_shown_interrupted_at_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(400):
        (src / f"f{i:03d}.bin").write_bytes(os.urandom(128 * 1024))
    target = tmp_path / "drive"
    target.mkdir()
    child = subprocess.Popen([sys.executable, "-m", "twofold", "backup", str(src), "--to",
                              str(target), "--workers", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    current = target / "twofold/default/current/src"
    deadline = time.monotonic() + 60
    while not (current.is_dir() and any(current.iterdir())):
        assert child.poll() is None, "the run ended before it could be looked at"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    child.send_signal(signal.SIGSTOP)
    try:
        assert _states(target) == ["running"]  # alive, holding the lock
    finally:
        child.send_signal(signal.SIGKILL)
        child.send_signal(signal.SIGCONT)
        child.wait()
    assert _states(target) == ["interrupted"]
