"""The config file: parsing, errors that name the line, `init`."""

from __future__ import annotations

from pathlib import Path

import pytest

from twofold.core.errors import ConfigError
from twofold.jobs.config import init_text, load, parse, user_folders

GOOD = """
exclude = ["*.iso"]
[sets.docs]
sources = ["~/Documents", "/srv/photos"]
target = "/media/me/BACKUP"
exclude = ["build/"]
default_excludes = false
"""


def test_parse_a_full_config(tmp_path: Path) -> None:
    cfg = parse(GOOD, tmp_path / "c.toml")
    s = cfg.sets["docs"]
    assert cfg.exclude == ["*.iso"]
    assert s.sources == ["~/Documents", "/srv/photos"] and s.target == "/media/me/BACKUP"
    assert s.exclude == ["build/"] and s.default_excludes is False


@pytest.mark.parametrize(("text", "words"), [
    ("[sets.a]\nsorces = ['x']\n", "unknown key 'sorces' (line 2)"),
    ("[sets.a]\nsources = 'x'\n", "must be a list of strings (line 2)"),
    ("[sets.a\n", "line 1"),
    ("colour = 1\n", "unknown key 'colour'"),
    ("[sets.a]\nsources=['x']\ndefault_excludes = 'no'\n", "true or false (line 3)"),
])
def test_broken_lines_are_named(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path / "c.toml")
    assert words in str(err.value)


def test_missing_default_is_empty_but_explicit_is_an_error(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert load(None).sets == {}
    with pytest.raises(ConfigError):
        load(tmp_path / "nope.toml")


def test_init_text_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Documents").mkdir()
    (tmp_path / "Music").mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    folders = user_folders(tmp_path)
    assert folders == [tmp_path / "Documents", tmp_path / "Music"]
    cfg = parse(init_text(folders, '/media/a "b"'), tmp_path / "c.toml")
    assert cfg.sets["default"].sources == [str(p) for p in folders]
    assert cfg.sets["default"].target == '/media/a "b"'


def test_init_without_folders_is_still_a_valid_config(tmp_path: Path) -> None:
    cfg = parse(init_text([], None), tmp_path / "c.toml")
    assert cfg.sets["default"].sources == [] and cfg.sets["default"].target is None


JOBS = """
[sets.docs]
sources = ["~/Documents"]
target = "UUID=2f1c0a9e-7d3b-4c55-9f0e-1a2b3c4d5e6f"
schedule = "daily"

[sets.nas]
sources = ["~/Pictures"]
target = "/mnt/nas/backups"
schedule = "Mon *-*-* 02:00"

[images.system]
source = "/dev/nvme0n1"
target = "LABEL=BACKUP"
"""


def test_jobs_with_drives_and_schedules(tmp_path: Path) -> None:
    from twofold.jobs.config import drive_of

    cfg = parse(JOBS, tmp_path / "c.toml")
    assert [j.name for j in cfg.jobs()] == ["docs", "nas", "system"]
    docs, img = cfg.sets["docs"], cfg.images["system"]
    assert docs.schedule is not None and docs.schedule.calendar == "daily"
    assert drive_of(docs.target) == ("uuid", "2f1c0a9e-7d3b-4c55-9f0e-1a2b3c4d5e6f")
    assert drive_of(img.target) == ("label", "BACKUP") and drive_of("/mnt/x") is None
    assert img.schedule.text == "every 90 days" and img.on_change
    assert cfg.sets["nas"].schedule is not None and cfg.sets["nas"].schedule.is_expression


@pytest.mark.parametrize(("text", "words"), [
    ("[sets.a]\nsources=['x']\nschedule = 'dayly'\n", "unknown schedule 'dayly' (line 3)"),
    ("[sets.a]\nschedule = 7\n", "'schedule' must be a string (line 2)"),
    ("[images.i]\ntarget = 'UUID=x'\n", "'source' is required"),
    ("[images.i]\nsource='/dev/sda'\ntarget='/x'\nkeep=3\n", "unknown key 'keep' (line 4)"),
    ("[sets.a]\n[images.a]\nsource='/dev/sda'\ntarget='/x'\n", "same name"),
])
def test_broken_job_lines_are_named(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path / "c.toml")
    assert words in str(err.value)


def test_a_config_without_schedules_still_loads(tmp_path: Path) -> None:
    cfg = parse(GOOD, tmp_path / "c.toml")
    assert cfg.sets["docs"].schedule is None and cfg.images == {}
