"""The progress protocol: engines report through it and never print; front ends render it."""

from __future__ import annotations

from typing import Protocol

from twofold.core.models import Issue


class Progress(Protocol):
    """A sink for progress. Engines call it from one thread only."""

    def phase(self, name: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        """A new phase begins (scanning, copying, verifying...); totals when known."""

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        """Work done since the last call within the current phase."""

    def issue(self, issue: Issue) -> None:
        """An item was skipped or needs the user's attention."""

    def finish(self) -> None:
        """The engine has finished (successfully or not)."""


class NullProgress:
    """A progress sink that ignores everything (tests, --json runs)."""

    def phase(self, name: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        """Ignore."""

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        """Ignore."""

    def issue(self, issue: Issue) -> None:
        """Ignore."""

    def finish(self) -> None:
        """Ignore."""


class TeeProgress:
    """A progress sink that hands every call to several (a screen and a log)."""

    def __init__(self, *sinks: Progress) -> None:
        self.sinks = sinks

    def phase(self, name: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        """To each sink."""
        for s in self.sinks:
            s.phase(name, total_files, total_bytes)

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        """To each sink."""
        for s in self.sinks:
            s.advance(files, nbytes)

    def issue(self, issue: Issue) -> None:
        """To each sink."""
        for s in self.sinks:
            s.issue(issue)

    def finish(self) -> None:
        """To each sink."""
        for s in self.sinks:
            s.finish()
