"""Who holds a lock, and the one rule for a holder that is gone.

A lock records the host name and process id of its holder. It is stale only when it was
taken on this host and that process no longer exists; a lock from another host is never
taken over (that needs a time rule, see issue 6).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


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


def is_stale(holder: Mapping[str, object]) -> bool:
    """A lock of this host whose process is gone."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    return isinstance(pid, int) and not pid_alive(pid)
