"""`twofold init` names an external drive by UUID and sets a schedule; `schedule install`
with nothing scheduled says so; a config set runs as a logged job (`twofold log`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.cli.app import app
from twofold.jobs.config import load

from ..backup.test_drive_checks import ext4_drive
from ..drives import IS_ROOT, NOT_ROOT_REASON

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    (tmp_path / "Documents").mkdir()
    (tmp_path / "Documents" / "cv.odt").write_text("my cv")
    return tmp_path


def cli(*args: str) -> tuple[int, str]:
    got = runner.invoke(app, list(args))
    return got.exit_code, got.output


def test_init_with_a_schedule_and_an_image_job(home: Path) -> None:
    code, text = cli("init", "--to", str(home / "nowhere"), "--schedule", "weekly",
                     "--image", "/dev/sda")
    assert code == 0, text
    assert "was not found when this was written" in text
    cfg = load(home / ".config/twofold/config.toml")
    assert cfg.sets["default"].schedule is not None
    assert cfg.sets["default"].schedule.text == "weekly"
    assert cfg.images["system"].source == "/dev/sda"
    code, text = cli("init", "--force", "--schedule", "hourly-ish")
    assert code == 2 and "--schedule" in text, text


def test_init_without_a_schedule_says_nothing_runs_by_itself(home: Path,
                                                             tmp_path: Path) -> None:
    code, text = cli("init", "--to", str(home))  # no terminal: nobody to ask
    assert code == 0 and "backups run only when you run" in text, text
    code, text = cli("schedule", "install", "--unit-dir", str(tmp_path / "units"))
    assert code == 0, text
    assert "nothing is scheduled" in text, text


@pytest.mark.skipif(not IS_ROOT, reason=f"a real drive {NOT_ROOT_REASON}")
def test_init_names_the_drive_by_uuid_and_a_run_after_eject_is_refused(home: Path) -> None:
    mnt = home / "media" / "BACKUP"
    with ext4_drive(home, mnt):
        uuid = subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID",
                               subprocess.run(["findmnt", "-no", "SOURCE", str(mnt)],
                                              capture_output=True, text=True,
                                              check=True).stdout.strip()],
                              capture_output=True, text=True, check=True).stdout.strip()
        code, text = cli("init", "--to", str(mnt), "--schedule", "daily")
        assert code == 0, text
        assert f'target = "UUID={uuid}"' in (home / ".config/twofold/config.toml").read_text()
        assert "the drive BACKUP" in text
        code, text = cli("backup")
        assert code == 0, text
        assert (mnt / "twofold/default/current/Documents/cv.odt").read_text() == "my cv"
        code, text = cli("log", "default")
        assert code == 0 and "result: ok" in text, text
    code, text = cli("backup")
    assert code == 1, text
    assert f"the drive UUID={uuid} is not connected" in text, text
    assert not any(mnt.iterdir())


@pytest.mark.skipif(not IS_ROOT, reason=f"a real drive {NOT_ROOT_REASON}")
def test_a_timer_finds_a_plain_path_drive_absent_not_failing(home: Path) -> None:
    mnt = home / "BACKUP"
    cfg = home / "c.toml"
    cfg.write_text(f'[sets.docs]\nsources = ["{home / "Documents"}"]\ntarget = "{mnt}"\n'
                   'schedule = "daily"\n')
    with ext4_drive(home, mnt):
        code, text = cli("--config", str(cfg), "run-due", "--job", "docs")
        assert code == 0 and "docs: ok" in text, text
    code, text = cli("--config", str(cfg), "run-due", "--job", "docs", "--force")
    assert code == 0, text
    assert "docs: absent: the drive BACKUP is not connected" in text, text
    assert not any(mnt.iterdir())
    code, text = cli("--config", str(cfg), "status", "--json", "docs")
    assert json.loads(text[text.index("{"):])["jobs"][0]["last_result"] == "ok", text
