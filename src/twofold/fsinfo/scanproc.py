"""Run the scanner in a child process, so walking the source and reading the catalog use
both cores. The child streams entries to the parent in pickled batches of plain tuples.

Only where `fork` exists (Linux, BSD); elsewhere the scan runs in-process. The child sees
the whole tree, so hard links are detected exactly as by an in-process scan.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import sys
import threading
from collections.abc import Iterator
from dataclasses import fields
from multiprocessing.connection import Connection
from multiprocessing.context import ForkContext, ForkServerContext
from operator import attrgetter

from twofold.core.models import Entry, Skipped
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Scanner, Source

BATCH = 2000
_ENTRY_FIELDS = tuple(f.name for f in fields(Entry))
_as_tuple = attrgetter(*_ENTRY_FIELDS)


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


def _child(conn: Connection, sources: list[Source], patterns: list[str],
           defaults: bool) -> None:
    die_with_parent()
    try:
        batch: list[tuple[object, ...]] = []
        for item in Scanner(sources, Excluder(patterns, defaults)):
            if isinstance(item, Skipped):
                batch.append((item.path, item.reason, item.is_dir))
            else:
                batch.append(_as_tuple(item))
            if len(batch) >= BATCH:
                conn.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
                batch = []
        conn.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
        conn.send_bytes(b"")
    except BaseException as err:  # handed to the parent, which raises it
        conn.send_bytes(b"E" + pickle.dumps(err))
    finally:
        conn.close()


def scan(sources: list[Source], patterns: list[str], defaults: bool) -> Iterator[
        Entry | Skipped]:
    """The entries of `sources` in path order, scanned in a child process where possible."""
    if not can_fork():
        yield from Scanner(sources, Excluder(patterns, defaults))
        return
    Excluder(patterns, defaults)  # a bad pattern is reported here, before forking
    ctx = child_context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, sources, patterns, defaults),
                       daemon=True)
    proc.start()
    child.close()
    try:
        while True:
            data = parent.recv_bytes()
            if not data:
                break
            if data[:1] == b"E":
                raise pickle.loads(data[1:])
            for t in pickle.loads(data):
                yield Skipped(*t) if len(t) == 3 else Entry(*t)
    finally:
        parent.close()
        if proc.is_alive():
            proc.terminate()
        proc.join()
