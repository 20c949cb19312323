"""Live progress of running jobs, for every front end: a run publishes its phase, counts
and result in one small JSON file under the state folder (live/<id>.json), whoever started
it (the panel, a timer, a plugged-in drive); a reader lists them and can ask one to stop.
The format is in docs/FORMAT.md (Live progress files)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from twofold.core.holders import pid_alive
from twofold.core.models import Issue
from twofold.core.paths import show
from twofold.core.progress import Progress

EVERY_NS = 200_000_000  # at most five writes a second while advancing
KEEP_NS = 3600 * 10**9  # finished entries are listed for an hour, then removed


class Cancelled(BaseException):
    """Raised inside a run of this process when a reader asked it to stop; like Ctrl-C,
    it leaves nothing kept damaged (BaseException so that engines do not catch it)."""


@dataclass
class LiveState:
    """What one live file says."""

    id: str
    job: str
    kind: str  # backup, image, verify, restore, delete...
    title: str
    pid: int
    started_ns: int
    updated_ns: int = 0
    phase: str = "starting"
    total_files: int | None = None
    total_bytes: int | None = None
    files: int = 0
    bytes: int = 0
    issues: int = 0
    last_issue: str = ""
    state: str = "running"  # running, ok, partial, failed, cancelled
    detail: str = ""
    log: str | None = None
    cancel: bool = False

    @property
    def running(self) -> bool:
        """Still running: its state says so and its process is alive."""
        return self.state == "running" and pid_alive(self.pid)


def live_dir(state_root: Path) -> Path:
    """The folder of live files in a state folder."""
    return state_root / "live"


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def read(path: Path) -> LiveState | None:
    """One live file (None when missing or damaged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LiveState(**data)
    except (OSError, ValueError, TypeError):
        return None


def listing(state_root: Path, now_ns: int | None = None) -> list[LiveState]:
    """Every live entry, newest first; a run whose process died unannounced is shown as
    failed, and entries finished more than an hour ago are removed."""
    now = now_ns if now_ns is not None else time.time_ns()
    found = []
    for path in live_dir(state_root).glob("*.json"):
        item = read(path)
        if item is None:
            continue
        if item.state == "running" and not pid_alive(item.pid):
            item.state, item.detail = "failed", "the process running it ended unexpectedly"
        if item.state != "running" and now - item.updated_ns > KEEP_NS:
            with suppress(OSError):
                path.unlink()
            continue
        found.append(item)
    return sorted(found, key=lambda i: i.started_ns, reverse=True)


def request_cancel(state_root: Path, live_id: str) -> bool:
    """Ask a running job to stop: its file is marked and its process gets SIGINT (a run of
    another process, e.g. a timer's) or sees the mark (a run of this process)."""
    path = live_dir(state_root) / f"{os.path.basename(live_id)}.json"
    item = read(path)
    if item is None or not item.running:
        return False
    data = asdict(item)
    data["cancel"] = True
    _write(path, data)
    if item.pid != os.getpid():
        with suppress(ProcessLookupError, PermissionError):
            os.kill(item.pid, signal.SIGINT)
    return True


@dataclass
class LiveProgress:
    """A Progress that publishes to a live file and passes every call on to `inner`."""

    state_root: Path
    job: str
    kind: str
    title: str
    inner: Progress | None = None
    clock: Callable[[], int] = time.time_ns
    item: LiveState = field(init=False)
    path: Path = field(init=False)
    _last: int = 0

    def __post_init__(self) -> None:
        with suppress(OSError):
            listing(self.state_root)  # drops what ended an hour ago: the folder stays small
        now = self.clock()
        ident = f"{self.job}-{now}-{os.getpid()}".replace("/", "_")
        self.item = LiveState(ident, self.job, self.kind, self.title, os.getpid(), now, now)
        self.path = live_dir(self.state_root) / f"{ident}.json"
        self._publish(force=True)

    def _publish(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last < EVERY_NS:
            return
        self._last = self.item.updated_ns = now
        if not self.item.cancel:  # a reader may have marked the file: keep the mark
            on_disk = read(self.path)
            if on_disk is not None and on_disk.cancel:
                self.item.cancel = True
        with suppress(OSError):  # progress is never a reason for a run to fail
            _write(self.path, asdict(self.item))
        if self.item.cancel and self.item.state == "running" and self.item.pid == os.getpid():
            raise Cancelled

    def flush(self) -> None:
        """Write what is known now (advance and issue write at most five times a second)."""
        self._publish(force=True)

    def phase(self, name: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        """A new phase: counts start again."""
        if self.inner is not None:
            self.inner.phase(name, total_files, total_bytes)
        self.item.phase, self.item.total_files, self.item.total_bytes = \
            name, total_files, total_bytes
        self.item.files = self.item.bytes = 0
        self._publish(force=True)

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        """Count; written at most five times a second."""
        if self.inner is not None:
            self.inner.advance(files, nbytes)
        item = self.item
        item.files += files
        item.bytes += nbytes
        if item.total_files is not None and item.files > item.total_files:
            item.total_files = item.files  # an estimate the run outgrew: never 12/5
        if item.total_bytes is not None and item.bytes > item.total_bytes:
            item.total_bytes = item.bytes
        self._publish()

    def issue(self, issue: Issue) -> None:
        """Count the issue and keep the last one's words."""
        if self.inner is not None:
            self.inner.issue(issue)
        self.item.issues += 1
        self.item.last_issue = f"{issue.kind}: {show(issue.path)}: {issue.message}"
        self._publish()

    def finish(self) -> None:
        """Passed on; the result comes with done()."""
        if self.inner is not None:
            self.inner.finish()

    def done(self, result: str, detail: str = "", log: str | None = None) -> None:
        """The run ended: ok, partial, failed or cancelled."""
        self.item.state, self.item.detail, self.item.log = result, detail, log
        self._publish(force=True)
