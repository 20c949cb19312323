"""Render engine progress with Rich: bars with bytes, files, rate and ETA."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from twofold.core.models import Issue
from twofold.core.text import plural
from twofold.fsinfo.children import note_fork_safe


class RichProgress:
    """A Progress sink drawing one bar per phase on stderr (nothing when not a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description:<10}"), BarColumn(),
            DownloadColumn(), TextColumn("{task.fields[files]}"), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console, transient=True, auto_refresh=False)
        self.task: TaskID | None = None
        self.files = 0
        self.total_files: int | None = None
        self.by_bytes = False
        self.done_bytes = 0
        self.total_bytes: int | None = None
        self.issues = 0
        self.started = False
        self._name = ""
        self._stop = threading.Event()
        self._redraw: threading.Thread | None = None

    def _redraw_loop(self) -> None:
        while not self._stop.wait(0.1):
            self.bar.refresh()

    def _files_text(self) -> str:
        if self.total_files:  # an estimate the run outgrew grows with it: never 12/5
            total = max(self.total_files, self.files)
            return f"{self.files:,}/{plural(total, 'file')}"
        return plural(self.files, "entry", "entries")

    def phase(self, name: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        """Start a new bar."""
        if not self.started:
            self.bar.start()
            self.started = True
            # Our own redraw thread rather than Rich's: its name tells fsinfo.children that
            # helper processes may be forked beside it (no fork server to outlive the run).
            self._stop.clear()
            self._redraw = threading.Thread(target=self._redraw_loop, name="twofold-progress",
                                            daemon=True)
            self._redraw.start()
            note_fork_safe(self._redraw)
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.files, self.total_files = 0, total_files
        self.by_bytes = total_bytes is not None
        self.done_bytes, self.total_bytes = 0, total_bytes
        self._name = name
        self.task = self.bar.add_task(name, total=total_bytes, files=self._files_text())

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        """Move the bar."""
        if self.task is None:
            return
        self.files += files
        if not self.by_bytes:
            self.bar.update(self.task, files=self._files_text())
            return
        self.done_bytes += nbytes
        if self.total_bytes is not None and self.done_bytes > self.total_bytes:
            self.total_bytes = self.done_bytes  # never more done than the total shown
        self.bar.update(self.task, advance=nbytes, total=self.total_bytes,
                        files=self._files_text())

    def issue(self, issue: Issue) -> None:
        """Count issues on the bar; the command lists them all at the end."""
        self.issues += 1
        if self.task is not None:
            self.bar.update(self.task,
                            description=f"{self._name} ({plural(self.issues, 'issue')})")

    def finish(self) -> None:
        """Remove the bars."""
        if self.started:
            self._stop.set()
            if self._redraw is not None:
                self._redraw.join()
                self._redraw = None
            self.bar.stop()
            self.started = False
