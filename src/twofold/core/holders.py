"""Who holds a lock, and the one rule for a holder that is gone.

A lock records the host name and process id of its holder, and (image store locks) the
time its lease runs out, which the holder keeps pushing forward while it runs. A lock is
stale when it says it was released, when it was taken on this host and that process no
longer exists, or when its lease ran out more than SKEW_NS ago by the reader's clock (the
margin absorbs clocks of different machines that disagree). A lock without a lease (a
backup set's lock file on a local drive) is never taken over from another host.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

SKEW_NS = 60 * 1_000_000_000
"""How far two machines' clocks may disagree before a live lease could look expired."""


def me() -> dict[str, object]:
    """This process as a lock holder."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return pid > 0


def is_stale(holder: Mapping[str, object], now_ns: int | None = None) -> bool:
    """A released lock, a lock of this host whose process is gone, or (given the time)
    one whose lease ran out more than SKEW_NS ago."""
    if holder.get("released") is True:
        return True
    expires = holder.get("expires_ns")
    if now_ns is not None and isinstance(expires, int) and now_ns > expires + SKEW_NS:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    return isinstance(pid, int) and not pid_alive(pid)
