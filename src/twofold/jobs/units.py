"""The text of what `schedule install` writes: systemd timer and service units (user units
for backups, system units for images and for run-on-connect), the udev rule that starts a
drive's unit, and crontab lines where systemd is absent. Pure: paths come in as arguments."""

from __future__ import annotations

import re
import shlex
import zlib
from dataclasses import dataclass

from twofold.core.schedule import DAY, cron_check
from twofold.jobs.config import Config, Job, SetConfig, drive_of

PREFIX = "twofold-"
DRIVE_UNIT = "twofold-drive@.service"
STATUS_UNIT = "twofold-status"
UDEV_RULE = "90-twofold.rules"
PANEL_UNIT = "twofold-panel.service"
PANEL_PORT = 8765
CRON_TAG = "# twofold:"
STATE_ENV = "TWOFOLD_STATE_DIR"


@dataclass(frozen=True)
class UnitFile:
    """One file to install: `scope` is user, system or udev."""

    scope: str
    name: str
    text: str


@dataclass(frozen=True)
class Invocation:
    """How units call twofold: the command, the config file and the state folder."""

    command: list[str]  # e.g. [sys.executable, "-m", "twofold"]
    config: str
    state: str

    def args(self, *rest: str) -> list[str]:
        """The full command line."""
        return [*self.command, "--config", self.config, *rest]


def systemd_quote(arg: str) -> str:
    """One ExecStart argument: quoted when needed, '%' doubled (systemd specifiers)."""
    arg = arg.replace("%", "%%")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _exec(inv: Invocation, *rest: str, raw_tail: str = "") -> str:
    line = " ".join(systemd_quote(a) for a in inv.args(*rest))
    return line + (f" {raw_tail}" if raw_tail else "")


def _service(description: str, inv: Invocation, exec_line: str, extra: str = "") -> str:
    return (f"[Unit]\nDescription={description}\n\n[Service]\nType=oneshot\n"
            f"Environment={systemd_quote(f'{STATE_ENV}={inv.state}')}\n"
            f"ExecStart={exec_line}\nNice=10\nIOSchedulingClass=idle\n{extra}")


def _timer(description: str, calendar: str) -> str:
    return (f"[Unit]\nDescription={description}\n\n[Timer]\nOnCalendar={calendar}\n"
            "Persistent=true\nRandomizedDelaySec=10min\n\n[Install]\n"
            "WantedBy=timers.target\n")


def unit_base(job: Job) -> str:
    """The unit name of a job without its suffix."""
    return f"{PREFIX}{job.kind}-{job.name}"


def job_units(job: Job, inv: Invocation) -> list[UnitFile]:
    """Service and timer of a scheduled job (none for a job without a schedule)."""
    if job.schedule is None:
        return []
    scope = "user" if isinstance(job, SetConfig) else "system"
    what = f"backup of set {job.name}" if scope == "user" else f"image {job.name}"
    base = unit_base(job)
    service = _service(f"twofold: {what}, when due", inv,
                       _exec(inv, "run-due", "--job", job.name))
    timer = _timer(f"twofold: check whether the {what} is due", job.schedule.calendar)
    return [UnitFile(scope, f"{base}.service", service),
            UnitFile(scope, f"{base}.timer", timer)]


def status_units(inv: Invocation) -> list[UnitFile]:
    """A daily `twofold status` that notifies the desktop when a job is overdue."""
    service = _service("twofold: warn when backups are overdue", inv, _exec(inv, "status"),
                       "SuccessExitStatus=4\n")
    return [UnitFile("user", f"{STATUS_UNIT}.service", service),
            UnitFile("user", f"{STATUS_UNIT}.timer",
                     _timer("twofold: daily check that backups are current", "daily"))]


def panel_units(inv: Invocation, port: int = PANEL_PORT) -> list[UnitFile]:
    """A user service keeping the control panel running on 127.0.0.1:`port`;
    `twofold panel --show` prints its address with the token of its start."""
    service = (f"[Unit]\nDescription=twofold: the control panel on 127.0.0.1:{port}\n\n"
               f"[Service]\nType=simple\n"
               f"Environment={systemd_quote(f'{STATE_ENV}={inv.state}')}\n"
               f"ExecStart={_exec(inv, 'panel', '--no-browser', '--port', str(port))}\n"
               "Restart=on-failure\n\n[Install]\nWantedBy=default.target\n")
    return [UnitFile("user", PANEL_UNIT, service)]


def label_pattern(label: str) -> str:
    """A udev match for ID_FS_LABEL, where udev replaced unsafe characters: '?' for any
    character that is not plainly safe."""
    return re.sub(r"[^A-Za-z0-9._-]", "?", label)


def udev_rule(cfg: Config) -> str | None:
    """Rules that start twofold-drive@<fs uuid>.service when a job's drive is plugged in."""
    lines = []
    wants = (', TAG+="systemd", ENV{SYSTEMD_WANTS}+="twofold-drive@$env{ID_FS_UUID}.service"'
             ', GOTO="twofold_end"')  # one start per drive, even when two rules match
    seen: set[tuple[str, str]] = set()
    for job in cfg.jobs():
        drive = drive_of(job.target)
        if drive is None or job.schedule is None or drive in seen:
            continue
        seen.add(drive)
        kind, value = drive
        key = "ID_FS_UUID" if kind == "uuid" else "ID_FS_LABEL"
        if kind == "uuid":  # udev reports FAT, exFAT and NTFS UUIDs in upper case,
            # Linux file systems' in lower case: match either, however it was written
            value = "|".join(dict.fromkeys((value.lower(), value.upper())))
        else:
            value = label_pattern(value)
        if not re.fullmatch(r"[A-Za-z0-9._?|-]+", value):
            continue  # a UUID udev could not report; nothing safe to match
        lines.append(f'ACTION=="add", SUBSYSTEM=="block", ENV{{{key}}}=="{value}"{wants}')
    if not lines:
        return None
    return ("# twofold: run the due jobs when a backup drive is connected.\n"
            "# Written by `twofold schedule install`; removed by `twofold schedule remove`.\n"
            + "\n".join(lines) + '\nLABEL="twofold_end"\n')


def drive_units(cfg: Config, inv: Invocation) -> list[UnitFile]:
    """The udev rule and the template unit it starts (waits for the mount, runs due jobs)."""
    rule = udev_rule(cfg)
    if rule is None:
        return []
    service = _service("twofold: run the due jobs for the drive with file system %i", inv,
                       _exec(inv, "run-due", "--wait", "120", raw_tail="--drive %i"),
                       "TimeoutStartSec=infinity\n")
    return [UnitFile("udev", UDEV_RULE, rule), UnitFile("system", DRIVE_UNIT, service)]


def plan_units(cfg: Config, inv: Invocation) -> list[UnitFile]:
    """Every file `schedule install` writes for this config under systemd."""
    files = [f for job in cfg.jobs() for f in job_units(job, inv)]
    if any(f.scope == "user" for f in files):
        files += status_units(inv)
    return files + drive_units(cfg, inv)


def cron_lines(cfg: Config, inv: Invocation, period: dict[str, int],
               include_images: bool) -> list[str]:
    """Crontab lines (one per scheduled job, tagged with the job's name) that run
    `run-due` daily, or hourly for jobs due more often than daily. `period` maps job
    names to their period."""
    lines = []
    for job in cfg.jobs():
        if job.schedule is None or (job.kind == "image" and not include_images):
            continue
        minute = zlib.crc32(job.name.encode()) % 60
        command = " ".join(shlex.quote(a) for a in inv.args("run-due", "--job", job.name))
        env = f"{STATE_ENV}={shlex.quote(inv.state)}"
        line = f"{cron_check(period.get(job.name, DAY), minute)} {env} {command} >/dev/null 2>&1"
        lines.append(line.replace("%", "\\%") + f" {CRON_TAG}{job.name}")
    return lines


def merge_crontab(existing: str, lines: list[str]) -> str:
    """`existing` without twofold's lines, then `lines`."""
    kept = [ln for ln in existing.splitlines() if CRON_TAG not in ln]
    return "\n".join([*kept, *lines]) + "\n" if kept or lines else ""
