"""The real clock, handed to engines by the front ends."""

from __future__ import annotations

import time


class SystemClock:
    """Reads the system's wall clock."""

    def now_ns(self) -> int:
        """Nanoseconds since the epoch."""
        return time.time_ns()
