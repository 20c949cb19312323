"""The state folder ($XDG_STATE_HOME/twofold): per job the last attempt and the last
success, the drive last seen, the OS fingerprint at the last image, per-run logs, and the
drive each set and image store was last found on."""

from __future__ import annotations

import json
import os
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from twofold.fsinfo.volume import DriveId

STATE_ENV = "TWOFOLD_STATE_DIR"


def state_dir() -> Path:
    """$TWOFOLD_STATE_DIR, else $XDG_STATE_HOME/twofold (~/.local/state/twofold)."""
    given = os.environ.get(STATE_ENV)
    if given:
        return Path(given)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "twofold"


@dataclass
class JobRecord:
    """What the state folder remembers of one job."""

    last_run_ns: int | None = None
    last_ok_ns: int | None = None
    result: str | None = None  # ok, partial, failed
    detail: str = ""
    drive_seen_ns: int | None = None
    log: str | None = None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class State:
    """The state folder; every read tolerates a missing or damaged file."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or state_dir()

    def record(self, job: str) -> JobRecord:
        """The record of `job` (empty when none)."""
        data = _read_json(self.root / "jobs" / f"{job}.json")
        if not isinstance(data, dict):
            return JobRecord()
        known = {f.name for f in fields(JobRecord)}
        return JobRecord(**{k: v for k, v in data.items() if k in known})

    def save(self, job: str, rec: JobRecord) -> None:
        """Replace the record of `job`."""
        _write_json(self.root / "jobs" / f"{job}.json", asdict(rec))

    def saw_drive(self, job: str, now_ns: int) -> None:
        """Remember that the drive of `job` was connected at `now_ns` (best effort)."""
        rec = self.record(job)
        rec.drive_seen_ns = now_ns
        with suppress(OSError):
            self.save(job, rec)

    def fingerprint(self, job: str) -> dict[str, Any] | None:
        """The OS fingerprint taken when image job `job` last succeeded."""
        data = _read_json(self.root / "os" / f"{job}.json")
        return data if isinstance(data, dict) else None

    def save_fingerprint(self, job: str, fp: dict[str, Any]) -> None:
        """Keep the OS fingerprint of the image just made."""
        _write_json(self.root / "os" / f"{job}.json", fp)

    def new_log(self, job: str, now_ns: int) -> Path:
        """A fresh log file for a run of `job` started at `now_ns`."""
        stamp = time.strftime("%Y-%m-%dT%H%M%S", time.localtime(now_ns / 1e9))
        folder = self.root / "logs" / job
        folder.mkdir(parents=True, exist_ok=True)
        path, n = folder / f"{stamp}.log", 1
        while path.exists():
            n += 1
            path = folder / f"{stamp}-{n}.log"
        return path

    def logs(self, job: str | None = None) -> list[Path]:
        """Log files of `job` (or of every job), oldest first."""
        base = self.root / "logs"
        found = base.glob(f"{job}/*.log" if job else "*/*.log")
        return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def seen_drive(self, kind: str, target: str, name: str = "") -> DriveId | None:
        """The drive the set or store `name` at folder `target` was last found on."""
        data = _read_json(self.root / "drives.json")
        return DriveId.from_json(data.get(_drive_key(kind, target, name))
                                 if isinstance(data, dict) else None)

    def remember_drive(self, kind: str, target: str, name: str, drive: DriveId) -> None:
        """Remember where a set or store lives, so that a run into the same folder with
        the drive gone is refused (best effort: a read-only home loses only the memory)."""
        path = self.root / "drives.json"
        data = _read_json(path)
        data = data if isinstance(data, dict) else {}
        key = _drive_key(kind, target, name)
        if data.get(key) == drive.to_json():
            return
        data[key] = drive.to_json()
        with suppress(OSError):
            _write_json(path, data)


def _drive_key(kind: str, target: str, name: str) -> str:
    return f"{kind}:{os.path.realpath(os.path.expanduser(target))}:{name}"
