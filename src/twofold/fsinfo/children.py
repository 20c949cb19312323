"""Helper processes (the planning workers, the copy workers): whether they can be started
cheaply, how to start them safely, and how they end with their parent."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from multiprocessing.context import ForkContext, ForkServerContext

from twofold.core.holders import pid_alive


def die_with_parent(main: int | None = None) -> None:
    """In a child: be killed when the parent dies, even by SIGKILL (Linux), so a killed run
    leaves no process behind still writing to the target.

    `main`: the run's own process. A child started by a fork server has the fork server
    as its parent, which lives as long as any of its children holds the pipe it watches,
    so such a child watches the run itself (a pidfd); once the children are gone, the
    fork server and the resource tracker see their pipes close and end too.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if main is not None and main != os.getppid():
        _watch(main)


def _watch(pid: int) -> None:
    """Kill this process when process `pid` ends (a thread waiting on its pidfd)."""
    import select
    import signal

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # already gone
        os.kill(os.getpid(), signal.SIGKILL)
        return
    except (OSError, AttributeError):  # no pidfd (Linux < 5.3): look once a second
        fd = -1

    def wait() -> None:
        if fd >= 0:
            select.select([fd], [], [])
        else:
            while pid_alive(pid):
                time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait, name="twofold-watch-run", daemon=True).start()


def can_fork() -> bool:
    """True where a child process can be forked cheaply."""
    return sys.platform != "win32" and "fork" in multiprocessing.get_all_start_methods()


FORK_SAFE_THREADS = frozenset({"twofold-read-ahead", "twofold-progress"})
"""Names of threads of ours beside which a fork is safe: they take no lock and no pool a
helper process uses (a loop reading a file; the redraw of a progress bar, which helpers
never draw)."""


_safe_tids: set[int] = set()  # kernel ids of fork-safe threads, kept while the kernel lists them


def note_fork_safe(thread: threading.Thread) -> None:
    """Record a started thread of FORK_SAFE_THREADS by its kernel id: a thread that has
    ended for Python stays in /proc/self/task for a moment, and must not count then."""
    if thread.name in FORK_SAFE_THREADS and thread.native_id is not None:
        _safe_tids.add(thread.native_id)


def unsafe_threads() -> int:
    """Threads of this process, other than the calling one and those in FORK_SAFE_THREADS
    (told apart by their kernel thread ids)."""
    try:
        tids = {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return threading.active_count() - 1
    tids.discard(threading.get_native_id())
    for t in threading.enumerate():
        note_fork_safe(t)
    _safe_tids.intersection_update(tids)  # a kernel id is reused only once it is gone
    return len(tids - _safe_tids)


def child_context() -> ForkContext | ForkServerContext:
    """How to start helper processes: a fork where no other thread runs (but the safe ones
    of FORK_SAFE_THREADS), else a fork server. A fork copies no other thread, so a lock or
    a thread pool another thread held (BLAKE3's hashing pool after a large restore, a
    network client's threads) would hang the child. A fork server and its resource tracker
    outlive the run by a moment, and cost a start-up, so they are used only when needed."""
    if unsafe_threads() == 0:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver")
