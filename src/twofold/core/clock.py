"""The clock protocol engines take, so that time is injected rather than read."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Anything that tells the time as nanoseconds since the Unix epoch (UTC)."""

    def now_ns(self) -> int: ...
