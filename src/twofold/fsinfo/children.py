"""Helper processes (the planning workers, the copy workers): whether they can be started
cheaply, how to start them safely, and how they end with their parent."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
from multiprocessing.context import ForkContext, ForkServerContext


def die_with_parent() -> None:
    """In a child: be killed when the parent dies, even by SIGKILL (Linux), so a killed run
    leaves no process behind still writing to the target."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def can_fork() -> bool:
    """True where a child process can be forked cheaply."""
    return sys.platform != "win32" and "fork" in multiprocessing.get_all_start_methods()


def child_context() -> ForkContext | ForkServerContext:
    """How to start helper processes: a fork where this process has one thread, else a
    fork server. A fork copies no other thread, so a lock or a thread pool another thread
    held (BLAKE3's hashing pool after a large restore, a network client's threads) would
    hang the child."""
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        threads = threading.active_count()
    if threads == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver")
