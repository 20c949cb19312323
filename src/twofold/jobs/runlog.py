"""A run's log in the state folder, whoever started it (a timer, a plugged-in drive, or a
person at the command line), and the result recorded for `status` and `log`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from twofold.core.clock import Clock
from twofold.core.errors import TwofoldError
from twofold.core.models import Issue
from twofold.core.paths import show
from twofold.jobs.state import JobRecord, State

if TYPE_CHECKING:
    from twofold.backup.engine import BackupResult

PARTIAL_KINDS = {"skipped", "unstable", "failed"}


class LogProgress:
    """A Progress that writes phases and issues to a run's log file."""

    def __init__(self, fh: TextIO) -> None:
        self.fh = fh

    def line(self, text: str) -> None:
        """One timestamped line."""
        self.fh.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.fh.flush()

    def phase(self, name: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        """Log the phase and its totals."""
        totals = [f"{n:,} {u}" for n, u in ((total_files, "files"), (total_bytes, "bytes"))
                  if n is not None]
        self.line(f"{name}" + (f" ({', '.join(totals)})" if totals else ""))

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        """Not logged: too many."""

    def issue(self, issue: Issue) -> None:
        """Log the item."""
        self.line(f"  {issue.kind}: {show(issue.path)}: {issue.message}")

    def finish(self) -> None:
        """Nothing to close; the caller owns the file."""


@dataclass
class RunLog:
    """A run being logged: its log's progress sink, and how it ended."""

    progress: LogProgress
    path: Path
    result: str = "ok"
    detail: str = ""


@contextmanager
def logged_run(state: State, name: str, kind: str, target: str, location: str,
               clock: Clock) -> Iterator[RunLog]:
    """Log a run of job `name` (started by a timer, a drive or by hand) and record its
    result in the state folder; an error is logged, recorded, and raised on."""
    started = clock.now_ns()
    log = state.new_log(name, started)
    with log.open("w", encoding="utf-8") as fh:
        run = RunLog(LogProgress(fh), log)
        run.progress.line(f"{kind} job {name!r} to {target} (at {location})")
        try:
            yield run
        except TwofoldError as err:
            run.result, run.detail = "failed", err.message
            raise
        except OSError as err:
            run.result, run.detail = "failed", f"{err.strerror or err}: {err.filename or ''}"
            raise
        except BaseException:
            run.result, run.detail = "failed", "interrupted"
            raise
        finally:
            run.progress.line(f"result: {run.result}"
                              + (f" ({run.detail})" if run.detail else ""))
            rec = state.record(name)
            ok_ns = None if run.result in ("failed", "cancelled") else clock.now_ns()
            state.save(name, JobRecord(last_run_ns=started,
                                       last_ok_ns=ok_ns or rec.last_ok_ns,
                                       result=run.result, detail=run.detail,
                                       drive_seen_ns=started, log=str(log)))


def outcome_of(r: BackupResult, log: LogProgress | None = None) -> tuple[str, str]:
    """("ok", "") or ("partial", "N skipped") for a backup's result; logs its counts."""
    s = r.stats
    if log is not None:
        log.line(f"run {r.run_id} ({r.run_name}): new {s.new} changed {s.changed} "
                 f"deleted {s.deleted} moved {s.moved} unchanged {s.unchanged} "
                 f"skipped {s.skipped}; {s.bytes_copied:,} bytes copied")
    bad = sum(1 for i in s.issues if i.kind in PARTIAL_KINDS)
    return ("partial", f"{bad} skipped") if bad else ("ok", "")
