"""`schedule install|show|remove`: put the units of jobs/units.py in place and enable them
(systemctl, udevadm), or the crontab lines where systemd is not running; or write
everything into one folder for review and packaging."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from twofold.core.errors import TwofoldError
from twofold.jobs.config import Config
from twofold.jobs.status import period_of
from twofold.jobs.units import (
    CRON_TAG,
    DRIVE_UNIT,
    PANEL_UNIT,
    PREFIX,
    UDEV_RULE,
    Invocation,
    UnitFile,
    cron_lines,
    merge_crontab,
    panel_units,
    plan_units,
)

SYSTEM_DIR = Path("/etc/systemd/system")
UDEV_DIR = Path("/etc/udev/rules.d")
CRONTAB = "crontab"


class ScheduleError(TwofoldError):
    """Installing or removing the schedule failed."""


@dataclass
class Report:
    """What install, show or remove did or found."""

    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timers: list[tuple[str, str, str]] = field(default_factory=list)  # unit, when, next
    cron: list[str] = field(default_factory=list)


def systemd_running() -> bool:
    """True when systemd is the init system (sd_booted)."""
    return os.path.isdir("/run/systemd/system")


def user_unit_dir() -> Path:
    """$XDG_CONFIG_HOME/systemd/user."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "systemd" / "user"


def _dirs(unit_dir: Path | None) -> dict[str, Path]:
    if unit_dir is not None:
        return {s: unit_dir / s for s in ("user", "system", "udev")}
    return {"user": user_unit_dir(), "system": SYSTEM_DIR, "udev": UDEV_DIR}


def _run(cmd: list[str], report: Report, stdin: str | None = None) -> str:
    try:
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False,
                           timeout=120)
    except FileNotFoundError:
        report.notes.append(f"{cmd[0]} is not installed; skipped `{' '.join(cmd)}`")
        return ""
    if r.returncode != 0:
        report.notes.append(f"`{' '.join(cmd)}` failed: {r.stderr.strip()}")
    return r.stdout


def _ours(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name.startswith(PREFIX) or p.name == UDEV_RULE)


def install(cfg: Config, inv: Invocation, unit_dir: Path | None = None,
            use_cron: bool | None = None, panel: bool = False) -> Report:
    """Install the schedule of `cfg`: into `unit_dir` (nothing enabled), under systemd,
    or as crontab lines (`use_cron`, or where systemd is not running). With `panel`, also
    the control panel's service; one installed before is kept."""
    report = Report()
    if not any(job.schedule is not None for job in cfg.jobs()):
        report.notes.append(
            f"nothing is scheduled: no set in {cfg.path} has a schedule, so nothing runs by "
            "itself; add schedule = \"daily\" (or weekly) to a set, or an [images.NAME] "
            "job, then run `twofold schedule install` again (docs/CONFIG.md)")
    if use_cron or (use_cron is None and unit_dir is None and not systemd_running()):
        if panel:
            report.notes.append("the panel's service needs systemd; run `twofold panel` "
                                "instead")
        return _install_cron(cfg, inv, report)
    files = plan_units(cfg, inv)
    scope_dirs = _dirs(unit_dir)
    if panel or any((scope_dirs[s] / PANEL_UNIT).exists() for s in ("user", "system")):
        files += panel_units(inv)
    root = os.geteuid() == 0
    if unit_dir is None and root:  # root has no user manager to speak of
        files = [UnitFile("system" if f.scope == "user" else f.scope, f.name, f.text)
                 for f in files]
    dirs = _dirs(unit_dir)
    if unit_dir is None and not root and any(f.scope != "user" for f in files):
        report.notes.append("image jobs and run-on-connect need system units: run "
                            "`sudo twofold schedule install` for them")
        files = [f for f in files if f.scope == "user"]
    if unit_dir is None:
        _remove_files(dirs, report, {f.scope for f in files}, enable=True)
    for f in files:
        dirs[f.scope].mkdir(parents=True, exist_ok=True)
        path = dirs[f.scope] / f.name
        path.write_text(f.text, encoding="utf-8")
        report.written.append(str(path))
    if unit_dir is None:
        _enable(files, report)
    return report


def _systemctl(scope: str) -> list[str]:
    return ["systemctl", "--user"] if scope == "user" else ["systemctl"]


def _enable(files: list[UnitFile], report: Report) -> None:
    for scope in ("user", "system"):
        timers = [f.name for f in files if f.scope == scope and
                  (f.name.endswith(".timer") or f.name == PANEL_UNIT)]
        if any(f.scope == scope for f in files):
            _run([*_systemctl(scope), "daemon-reload"], report)
        if timers:
            _run([*_systemctl(scope), "enable", "--now", *timers], report)
    if any(f.scope == "udev" for f in files):
        _run(["udevadm", "control", "--reload"], report)


def _remove_files(dirs: dict[str, Path], report: Report, scopes: set[str],
                  enable: bool) -> None:
    for scope in sorted(scopes):
        found = _ours(dirs[scope])
        timers = [p.name for p in found if p.suffix == ".timer" or p.name == PANEL_UNIT]
        if timers and enable and scope != "udev":
            _run([*_systemctl(scope), "disable", "--now", *timers], report)
        for p in found:
            p.unlink()
            report.removed.append(str(p))


def _read_crontab() -> str:
    r = subprocess.run([CRONTAB, "-l"], capture_output=True, text=True, check=False,
                       timeout=60)
    return r.stdout if r.returncode == 0 else ""  # "no crontab for user" is rc 1


def _install_cron(cfg: Config, inv: Invocation, report: Report) -> Report:
    if not shutil.which(CRONTAB):
        raise ScheduleError("neither systemd nor crontab is available",
                            "install cron, or run the jobs with `twofold run-due` from "
                            "another scheduler")
    root = os.geteuid() == 0
    if not root and cfg.images:
        report.notes.append("image jobs need root: run `sudo twofold schedule install`")
    periods = {j.name: period_of(j.schedule) or 0 for j in cfg.jobs() if j.schedule}
    lines = cron_lines(cfg, inv, periods, include_images=root)
    text = merge_crontab(_read_crontab(), lines)
    r = subprocess.run([CRONTAB, "-"], input=text, capture_output=True, text=True,
                       check=False, timeout=60)
    if r.returncode != 0:
        raise ScheduleError(f"crontab refused the new lines: {r.stderr.strip()}")
    report.cron = lines
    report.notes.append("systemd is not running: installed crontab lines (run-on-connect "
                        "needs systemd and udev)")
    return report


def remove(cfg: Config, unit_dir: Path | None = None) -> Report:
    """Remove every unit, rule and crontab line twofold installed."""
    report = Report()
    dirs = _dirs(unit_dir)
    scopes = {"user"} | ({"system", "udev"} if unit_dir or os.geteuid() == 0 else set())
    _remove_files(dirs, report, scopes, enable=unit_dir is None)
    if unit_dir is None and shutil.which(CRONTAB):
        existing = _read_crontab()
        if CRON_TAG in existing:
            subprocess.run([CRONTAB, "-"], input=merge_crontab(existing, []), text=True,
                           capture_output=True, check=False, timeout=60)
            report.removed += [ln for ln in existing.splitlines() if CRON_TAG in ln]
    if unit_dir is None and any(p.endswith(UDEV_RULE) for p in report.removed):
        _run(["udevadm", "control", "--reload"], report)
    return report


def next_elapse(calendar: str) -> str:
    """When a calendar expression fires next, as systemd-analyze says."""
    if not shutil.which("systemd-analyze"):
        return "?"
    r = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True,
                       text=True, check=False, timeout=30)
    for line in r.stdout.splitlines():
        if "Next elapse" in line:
            return line.split(":", 1)[1].strip()
    return "?"


def show(cfg: Config, unit_dir: Path | None = None) -> Report:
    """What is installed: unit files with each timer's next run, and crontab lines."""
    report = Report()
    for scope, folder in _dirs(unit_dir).items():
        for p in _ours(folder):
            report.written.append(str(p))
            if p.suffix == ".timer":
                cal = next((ln.split("=", 1)[1] for ln in p.read_text().splitlines()
                            if ln.startswith("OnCalendar=")), "?")
                report.timers.append((f"{p.name} ({scope})", cal, next_elapse(cal)))
    if unit_dir is None and shutil.which(CRONTAB):
        report.cron = [ln for ln in _read_crontab().splitlines() if CRON_TAG in ln]
    if not any((report.written, report.cron)):
        report.notes.append("nothing installed; `twofold schedule install` installs the "
                            f"schedule of {cfg.path}")
    elif not any(p.endswith(DRIVE_UNIT) for p in report.written) and unit_dir is None:
        report.notes.append("run-on-connect is not installed (needs root)")
    return report
