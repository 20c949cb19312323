"""The TOML config file: backup sets (sources, target, excludes, schedule) and image jobs.

The schema is documented in docs/CONFIG.md; every key is checked, so a typo is an error
that names the key and its line rather than a setting silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twofold.core.errors import ConfigError
from twofold.core.schedule import HINT, Schedule, parse_schedule

SET_KEYS = {"sources", "target", "exclude", "default_excludes", "allow_mass_delete",
            "schedule", "keep_daily", "keep_weekly", "keep_monthly"}
KEEP_KEYS = ("keep_daily", "keep_weekly", "keep_monthly")
IMAGE_KEYS = {"source", "target", "schedule", "on_change", "compression"}
TOP_KEYS = {"exclude", "sets", "images"}
IMAGE_SCHEDULE = "every 90 days"
USER_FOLDERS = ("DOCUMENTS", "PICTURES", "MUSIC", "VIDEOS", "DESKTOP")


@dataclass
class SetConfig:
    """One backup set from the config."""

    name: str
    sources: list[str]
    target: str | None = None
    exclude: list[str] = field(default_factory=list)
    default_excludes: bool = True
    allow_mass_delete: bool = False
    schedule: Schedule | None = None  # None: run only by hand
    keep: tuple[int, int, int] = (0, 0, 0)  # daily, weekly, monthly; all 0: keep everything
    kind = "backup"


@dataclass
class ImageJob:
    """One image job: which disk to image, where to, how often, and whether a change of
    the installed system makes it due."""

    name: str
    source: str
    target: str
    schedule: Schedule = field(default_factory=lambda: parse_schedule(IMAGE_SCHEDULE))
    on_change: bool = True
    compression: str = "balanced"
    kind = "image"


Job = SetConfig | ImageJob


@dataclass
class Config:
    """The whole config; `exists` is False when no file was found."""

    path: Path
    exists: bool = False
    exclude: list[str] = field(default_factory=list)
    sets: dict[str, SetConfig] = field(default_factory=dict)
    images: dict[str, ImageJob] = field(default_factory=dict)

    def jobs(self) -> list[Job]:
        """Every backup set and image job, sets first."""
        return [*self.sets.values(), *self.images.values()]

    def job(self, name: str) -> Job | None:
        """The set or image job called `name`."""
        return self.sets.get(name) or self.images.get(name)


def drive_of(target: str | None) -> tuple[str, str] | None:
    """("uuid", value) or ("label", value) for a target given as UUID=... or LABEL=...;
    None for a plain folder."""
    if target is None:
        return None
    key, sep, value = target.partition("=")
    if sep and key.upper() in ("UUID", "LABEL") and value:
        return key.lower(), value
    return None


def default_path() -> Path:
    """$XDG_CONFIG_HOME/twofold/config.toml (~/.config by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "twofold" / "config.toml"


def _line_of(text: str, key: str) -> str:
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(key):
            return f" (line {n})"
    return ""


def _strings(value: Any, where: str, text: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of strings{_line_of(text, key)}",
                          'for example: exclude = ["*.iso", "node_modules/"]')
    return list(value)


def _bool(value: Any, where: str, text: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be true or false{_line_of(text, key)}")
    return value


def _count(value: Any, where: str, text: str, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}: '{key}' must be a whole number, 0 or more"
                          f"{_line_of(text, key)}", "e.g. keep_daily = 7")
    return value


def _schedule(value: Any, where: str, text: str) -> Schedule:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: 'schedule' must be a string{_line_of(text, 'schedule')}",
                          HINT)
    try:
        return parse_schedule(value)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}{_line_of(text, 'schedule')}", HINT) from None


def _string(value: Any, where: str, text: str, key: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: '{key}' must be {what}{_line_of(text, key)}")
    return value


def _unknown(keys: set[str], known: set[str], where: str, text: str) -> None:
    for key in sorted(keys - known):
        raise ConfigError(f"{where}: unknown key '{key}'{_line_of(text, key)}",
                          f"known keys: {', '.join(sorted(known))}")


def parse(text: str, path: Path) -> Config:
    """Parse and check config text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {err}", "fix that line; docs/CONFIG.md shows a full "
                          "example") from err
    cfg = Config(path, exists=True)
    _unknown(set(data), TOP_KEYS, str(path), text)
    cfg.exclude = _strings(data.get("exclude", []), str(path), text, "exclude")
    for name, body, where in _sections(data, "sets", SET_KEYS, path, text):
        sources = _strings(body.get("sources", []), where, text, "sources")
        target = body.get("target")
        if target is not None:
            _string(target, where, text, "target", TARGET_WHAT)
        cfg.sets[name] = SetConfig(
            name=name, sources=sources, target=target,
            exclude=_strings(body.get("exclude", []), where, text, "exclude"),
            default_excludes=_bool(body.get("default_excludes", True), where, text,
                                   "default_excludes"),
            allow_mass_delete=_bool(body.get("allow_mass_delete", False), where, text,
                                    "allow_mass_delete"),
            schedule=None if "schedule" not in body else
            _schedule(body["schedule"], where, text),
            keep=(_count(body.get("keep_daily", 0), where, text, "keep_daily"),
                  _count(body.get("keep_weekly", 0), where, text, "keep_weekly"),
                  _count(body.get("keep_monthly", 0), where, text, "keep_monthly")))
    _parse_images(data, cfg, text)
    return cfg


TARGET_WHAT = "a folder, UUID=<filesystem uuid> or LABEL=<filesystem label>"


def _sections(data: dict[str, Any], kind: str, known: set[str], path: Path, text: str
              ) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(name, body, where) of each [kind.NAME] table, its keys checked."""
    tables = data.get(kind, {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: '{kind}' must be a table of [{kind}.NAME] sections")
    for name, body in tables.items():
        where = f"{path} [{kind}.{name}]"
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: must be a table{_line_of(text, f'[{kind}.{name}]')}")
        _unknown(set(body), known, where, text)
        yield name, body, where


def _parse_images(data: dict[str, Any], cfg: Config, text: str) -> None:
    for name, body, where in _sections(data, "images", IMAGE_KEYS, cfg.path, text):
        if name in cfg.sets:
            raise ConfigError(f"{where}: a backup set has the same name",
                              "jobs are named by their section; give each its own name")
        for key in ("source", "target"):
            if key not in body:
                raise ConfigError(f"{where}: '{key}' is required",
                                  'e.g. source = "/dev/sda", target = "UUID=..."')
        cfg.images[name] = ImageJob(
            name=name, source=_string(body["source"], where, text, "source", "a device path"),
            target=_string(body["target"], where, text, "target", TARGET_WHAT),
            schedule=_schedule(body.get("schedule", IMAGE_SCHEDULE), where, text),
            on_change=_bool(body.get("on_change", True), where, text, "on_change"),
            compression=_string(body.get("compression", "balanced"), where, text,
                                "compression", "fast, balanced, max or 1..22"))


def load(path: Path | None) -> Config:
    """Load the config at `path` (or the default path); a missing file is an empty config."""
    where = path or default_path()
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        if path is not None:
            raise ConfigError(f"config file {path} does not exist",
                              "create one with `twofold init`") from None
        return Config(where)
    except OSError as err:
        raise ConfigError(f"cannot read config {where}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise not_utf8(where, err) from None
    return parse(text, where)


def not_utf8(where: Path, err: UnicodeDecodeError) -> ConfigError:
    """The usage error for a config file that is not UTF-8 text."""
    raw = err.object[:err.start]
    line = raw.count(b"\n") + 1
    column = err.start - (raw.rfind(b"\n") + 1) + 1
    return ConfigError(f"{where}: line {line}, column {column}: byte "
                       f"0x{err.object[err.start]:02x} is not UTF-8 text",
                       "a config file is UTF-8 (TOML); save it as UTF-8, or retype that line")


def user_folders(home: Path) -> list[Path]:
    """The user's Documents, Pictures, Music, Videos and Desktop folders that exist."""
    named = {k: home / k.capitalize() for k in USER_FOLDERS}
    dirs_file = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "user-dirs.dirs"
    try:
        for line in dirs_file.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            kind = key.strip().removeprefix("XDG_").removesuffix("_DIR")
            if kind in named and value:
                named[kind] = Path(value.strip().strip('"').replace("$HOME", str(home)))
    except OSError:
        pass
    return [p for p in (named[k] for k in USER_FOLDERS) if p.is_dir()]


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def init_text(sources: list[Path], target: str | None, schedule: str | None = None,
              drive_note: str = "", image_source: str | None = None) -> str:
    """A commented config with one set, 'default', run on `schedule` (None: by hand), and
    an image job of `image_source` when given (else a commented example)."""
    src = ",\n    ".join(_toml_str(str(p)) for p in sources)
    tgt = f"target = {_toml_str(target)}" if target else \
        '# target = "/media/you/BACKUP"   # the mount point of your backup drive'
    note = f"# {drive_note}\n" if drive_note else ""
    sched = f"schedule = {_toml_str(schedule)}" if schedule else \
        '# schedule = "daily"   # daily, weekly, monthly or "every N days"; none: by hand'
    image_target = _toml_str(target) if target else '"/media/you/BACKUP"'
    image = (f"[images.system]\nsource = {_toml_str(image_source)}\ntarget = {image_target}\n"
             if image_source else
             f"# [images.system]\n# source = \"/dev/sda\"\n# target = {image_target}\n")
    return f"""# twofold configuration. Full reference: docs/CONFIG.md
# Run a set with `twofold backup NAME`; `twofold backup` alone runs the set "default".
# `twofold schedule install` runs the scheduled ones by themselves.

# Patterns (gitignore rules) left out of every set, besides the built-in caches and trash.
exclude = []

[sets.default]
# The folders to back up; each becomes a top-level folder in the backup.
sources = [
    {src}
]
# Where backups go: a folder on the external drive (a new folder twofold/ is made there).
{note}{tgt}
# How often (run by the timers, and when the drive is plugged in while a run is due).
{sched}
# Patterns left out of this set only, e.g. ["*.iso", "node_modules/"].
exclude = []
# Leave out caches and trash (.cache/, .Trash-*/, Thumbs.db ...)?
default_excludes = true

# An image of the whole system disk, every 90 days or as soon as packages, kernel or boot
# files change (image jobs default to that).
{image}"""
