"""The parts under the panel: live progress files and cancel, desktop notices, config
edits with tomlkit, the panel's service unit, and a CLI start-up without the web stack."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.web.conftest import World
from twofold.cli.app import app
from twofold.core.due import Verdict
from twofold.core.errors import ConfigError
from twofold.core.models import Issue
from twofold.jobs import rundue
from twofold.jobs.clock import SystemClock
from twofold.jobs.config import load
from twofold.jobs.live import Cancelled, LiveProgress, LiveState, listing, read, request_cancel
from twofold.jobs.notices import Watch
from twofold.jobs.settings import edit_job, save
from twofold.jobs.state import State
from twofold.jobs.status import JobStatus
from twofold.web.runner import Runner


def test_live_progress_publishes_counts_and_the_result(tmp_path: Path) -> None:
    live = LiveProgress(tmp_path, "docs", "backup", "Backup docs")
    live.phase("copying", 10, 1000)
    live.advance(3, 300)
    live.issue(Issue(b"Docs/x", "skipped", "permission denied"))
    live.flush()
    (item,) = listing(tmp_path)
    assert (item.phase, item.total_files, item.issues) == ("copying", 10, 1)
    assert "Docs/x" in item.last_issue and item.running
    live.done("partial", "1 skipped", "/log")
    (item,) = listing(tmp_path)
    assert (item.state, item.detail, item.log, item.running) == ("partial", "1 skipped",
                                                                 "/log", False)


def test_a_run_whose_process_died_shows_as_failed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = LiveProgress(tmp_path, "docs", "backup", "Backup docs")
    live.item.pid = dead.pid
    live.flush()
    (item,) = listing(tmp_path)
    assert item.state == "failed" and "ended unexpectedly" in item.detail
    old = LiveProgress(tmp_path, "pics", "backup", "Backup pics", clock=lambda: 1)
    old.done("ok")
    assert [i.job for i in listing(tmp_path)] == ["docs"]  # an hour-old end is gone
    assert not old.path.exists()


def test_cancel_a_task_of_this_process(tmp_path: Path) -> None:
    runner = Runner(tmp_path, None)
    started = []

    def work(live: LiveProgress) -> str:
        live.phase("checking", 10**9)
        started.append(live.item.id)
        while True:
            live.advance(1)
            time.sleep(0.01)

    runner.start_task("verify-all", "verify", "Verify", work)
    while not started:
        time.sleep(0.01)
    assert request_cancel(tmp_path, started[0])
    runner.wait(60)
    (item,) = listing(tmp_path)
    assert item.state == "cancelled"
    assert not request_cancel(tmp_path, started[0])  # over: nothing to stop


def test_cancel_a_run_of_another_process(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from twofold.jobs.live import LiveProgress
        live = LiveProgress(Path({str(tmp_path)!r}), "docs", "backup", "Backup docs")
        live.phase("copying", 100)
        print("started", flush=True)
        try:
            while True:
                live.advance(1)
                time.sleep(0.01)
        except KeyboardInterrupt:
            live.done("cancelled", "stopped by the user")
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "started"
    (item,) = listing(tmp_path)
    assert request_cancel(tmp_path, item.id)
    assert child.wait(60) == 0
    (item,) = listing(tmp_path)
    assert item.state == "cancelled" and item.cancel


def test_a_cancelled_run_due_is_recorded(world: World, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    def interrupted(*args: object) -> tuple[str, str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(rundue, "_backup", interrupted)
    cfg = load(world.config)
    job = cfg.sets["docs"]
    state = State(world.state)
    with pytest.raises(KeyboardInterrupt):
        rundue.run_job(job, cfg, str(world.drive), state, SystemClock(), dict)
    rec = state.record("docs")
    assert rec.result == "cancelled" and rec.log is not None
    assert "result: cancelled" in Path(rec.log).read_text()
    (item,) = listing(world.state)
    assert item.state == "cancelled"


def test_cancelled_is_a_base_exception() -> None:
    """Engines catch Exception for per-file errors; a cancel must pass through them."""
    assert not issubclass(Cancelled, Exception)


def _status(name: str, state: str, location: str | None = None) -> JobStatus:
    return JobStatus(name, "backup", "daily", "LABEL=X", location, None, None, "", None,
                     Verdict(state, f"{name} is {state}"))


def test_notices_are_said_once_when_things_change() -> None:
    sent: list[tuple[str, str]] = []
    watch = Watch(send=lambda t, b: sent.append((t, b)) is None)
    watch.look([_status("docs", "overdue"), _status("pics", "due")], [])
    assert [t for t, _ in sent] == ["twofold: docs is overdue"]
    watch.look([_status("docs", "overdue"), _status("pics", "due")], [])
    assert len(sent) == 1  # nothing new
    watch.look([_status("docs", "overdue"), _status("pics", "due", "/media/x")], [])
    assert sent[-1][0] == "twofold: the drive of pics is connected"
    failed = LiveState("i1", "docs", "backup", "Backup docs", os.getpid(), 1, 1,
                       state="failed", detail="the drive went away")
    watch.look([_status("docs", "current")], [failed])
    assert sent[-1] == ("twofold: Backup docs failed", "the drive went away")
    watch.look([_status("docs", "failing")], [failed])
    assert sent[-1][0] == "twofold: docs is failing" and len(sent) == 4


def test_no_desktop_no_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    from twofold.jobs.notices import send_desktop

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert send_desktop("t", "b") is False


def test_config_edits_keep_comments_and_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('# top comment\n[sets.docs]\n# which folders\nsources = ["/a"]\n'
                    'target = "/t"  # the drive\n')
    text = edit_job(path.read_text(), "sets", "docs",
                    {"sources": "/a\n/b\n", "schedule": "weekly", "exclude": ""})
    assert "# top comment" in text and "# which folders" in text and "# the drive" in text
    cfg = save(path, text)
    assert cfg.sets["docs"].sources == ["/a", "/b"]
    assert cfg.sets["docs"].schedule is not None
    text = edit_job(path.read_text(), "sets", "new", {"sources": "/c", "target": "/t"})
    assert load(Path(save(path, text).path)).sets["new"].sources == ["/c"]
    before = path.read_text()
    with pytest.raises(ConfigError, match="line"):
        save(path, edit_job(before, "sets", "docs", {"schedule": "every blue moon"}))
    assert path.read_text() == before
    with pytest.raises(ConfigError):
        edit_job("a = [", "sets", "docs", {})


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def test_schedule_install_panel_writes_a_service(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[sets.docs]\nsources = ["/a"]\ntarget = "/t"\nschedule = "daily"\n')
    units = tmp_path / "units"
    runner = CliRunner()
    r = runner.invoke(app, ["--config", str(cfg), "schedule", "install", "--panel",
                            "--unit-dir", str(units)])
    assert r.exit_code == 0, r.output
    service = units / "user" / "twofold-panel.service"
    text = service.read_text()
    assert "panel --no-browser --port 8765" in text and "WantedBy=default.target" in text
    r = runner.invoke(app, ["--config", str(cfg), "schedule", "install",
                            "--unit-dir", str(units)])
    assert r.exit_code == 0 and service.exists()  # installed once, kept
    if SYSTEMD_ANALYZE:
        runtime = tmp_path / "run"
        runtime.mkdir()
        v = subprocess.run([SYSTEMD_ANALYZE, "verify", "--user", str(service)],
                           capture_output=True, text=True, check=False,
                           env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
        assert v.returncode == 0 and "ignoring" not in v.stderr, v.stderr


@pytest.mark.parametrize("command", [["status", "--help"], ["panel", "--help"]])
def test_the_cli_starts_without_the_web_stack(command: list[str]) -> None:
    probe = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["twofold", *{command!r}]
        try:
            runpy.run_module("twofold", run_name="__main__")
        except SystemExit:
            pass
        web = ("starlette", "uvicorn", "jinja2", "tomlkit", "twofold.web.app")
        print(sorted(m for m in web if m in sys.modules))
    """)
    got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert got.stdout.strip().splitlines()[-1] == "[]", got.stdout


def test_panel_show_without_a_panel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWOFOLD_STATE_DIR", str(tmp_path))
    r = CliRunner().invoke(app, ["panel", "--show"])
    assert r.exit_code == 2 and "no panel is running" in r.output
    (tmp_path / "panel.json").write_text(f'{{"url": "http://x/?token=1", "pid": {os.getpid()}}}')
    r = CliRunner().invoke(app, ["panel", "--show"])
    assert r.exit_code == 0 and "http://x/?token=1" in r.output


def test_a_damaged_live_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "x.json").write_text("{not json")
    assert listing(tmp_path) == [] and read(tmp_path / "live" / "x.json") is None


def test_retention_in_the_config_is_checked_and_applied_after_a_run(world: World) -> None:
    from twofold.backup.inspect import list_runs

    text = world.config.read_text()
    with pytest.raises(ConfigError, match=r"keep_daily.*whole number"):
        save(world.config, edit_job(text, "sets", "docs", {"keep_daily": "x"}))
    bad = text.replace('schedule = "daily"', 'schedule = "daily"\nkeep_weekly = -1', 1)
    with pytest.raises(ConfigError, match=r"keep_weekly.*whole number.*line"):
        save(world.config, bad)
    cfg = save(world.config, edit_job(text, "sets", "docs", {"keep_daily": "1"}))
    assert cfg.sets["docs"].keep == (1, 0, 0) and "keep_daily = 1" in world.config.read_text()
    (world.src / "letter.txt").write_text("third\n")
    out = rundue.run_job(cfg.sets["docs"], cfg, str(world.drive), State(world.state),
                         SystemClock(), dict)
    assert out.result == "ok", out
    states = [r.state for r in list_runs(str(world.drive), "docs")]
    assert states == ["pruned", "pruned", "complete"], states
    assert "retention (keep daily 1" in Path(out.log or "").read_text()
    cfg = save(world.config, edit_job(world.config.read_text(), "sets", "docs",
                                      {"keep_daily": "0"}))
    assert cfg.sets["docs"].keep == (0, 0, 0) and "keep_daily" not in world.config.read_text()


def test_ctrl_c_stops_the_panel_with_a_browser_listening(world: World) -> None:
    import re
    import threading
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "twofold", "--config", str(world.config),
                             "panel", "--no-browser"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url, token = next(m.groups() for line in proc.stdout
                      if (m := re.search(r"(http://\S+)\?token=(\S+)", line)))
    req = urllib.request.Request(url + "events", headers={"x-twofold-token": token})
    first: list[bytes] = []
    stream = urllib.request.urlopen(req, timeout=60)

    def listen() -> None:
        first.append(stream.readline())
        stream.read()  # until the panel ends the stream

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    while not first:
        time.sleep(0.05)
    assert first[0].startswith(b"event: live")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    reader.join(60)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "panel stopped" in err and not (world.state / "panel.json").exists()


def test_the_exclude_of_every_set_goes_before_the_first_table(tmp_path: Path) -> None:
    from twofold.jobs.settings import edit_exclude

    path = tmp_path / "c.toml"
    text = edit_exclude('# mine\n[sets.a]\nsources = ["/x"]\n', "*.iso\nnode_modules/")
    assert text.startswith("# mine\nexclude = [")
    assert save(path, text).exclude == ["*.iso", "node_modules/"]
    assert save(path, edit_exclude(text, "")).exclude == []
