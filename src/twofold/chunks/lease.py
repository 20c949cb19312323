"""The image store's locks, built from put-once objects alone (no shared file system, no
pids across machines): leases their holders renew, and generations for the exclusive lock,
so that two machines taking over one stale lock cannot both win (docs/DESIGN.md).

A lock is a series of records `<key>.<seq>.json`; the newest says who holds it and until
when (holders.is_stale decides). The holder writes record seq+1 every RENEW_S seconds and
then deletes record seq. The exclusive lock's key is `locks/exclusive-<generation>`: a
taker claims generation top+1 when the top one is stale, and gives up when a higher one
appears; the top generation is never deleted, only marked released.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from twofold.blobs.objects import ObjectMissing, ObjectStore, StoreError
from twofold.core.clock import Clock
from twofold.core.holders import is_stale
from twofold.core.holders import me as holder_me

EXCLUSIVE = "locks/exclusive-"
CREATE = "locks/create-"
LEASE_S = 60.0
"""A holder's lease: a record says it holds the lock until LEASE_S after it was written."""


def _split(name: str) -> tuple[str, int] | None:
    stem, dot, seq = name.removesuffix(".json").rpartition(".")
    return (stem, int(seq)) if dot and seq.isdigit() else None


def records(objects: ObjectStore, prefix: str) -> dict[str, list[str]]:
    """Lock key -> its record names, oldest first."""
    found: dict[str, list[tuple[int, str]]] = {}
    for o in objects.list(prefix):
        parts = _split(o.name)
        if parts is not None:
            found.setdefault(parts[0], []).append((parts[1], o.name))
    return {k: [n for _, n in sorted(v)] for k, v in found.items()}


def holder(objects: ObjectStore, names: list[str]) -> dict[str, Any] | None:
    """The newest record's content; None when it vanished under us (a renewal: live)."""
    try:
        doc = json.loads(objects.get(names[-1]))
    except ObjectMissing:
        return None
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def busy(objects: ObjectStore, key: str, doc: dict[str, Any] | None, what: str) -> StoreError:
    """The error for a lock held by someone else."""
    doc = doc or {}
    return StoreError(
        f"the image store {objects.describe()} is busy: {what} by pid {doc.get('pid')} on "
        f"{doc.get('host')}",
        f"wait for it to finish; a holder that crashed loses the lock {LEASE_S:.0f}-"
        f"{2 * LEASE_S:.0f} s after its last renewal (at once on its own host), or delete "
        f"{key}.* in the store if no twofold runs there")


def live(objects: ObjectStore, names: list[str], clock: Clock) -> dict[str, Any] | None:
    """The holder's record when the lock is held, else None (stale or gone)."""
    doc = holder(objects, names)
    if doc is None:
        return {}
    return None if is_stale(doc, clock.now_ns()) else doc


class Lease:
    """One lock held by this process: claimed with put-once, renewed by a thread."""

    def __init__(self, objects: ObjectStore, key: str, clock: Clock,
                 lease_s: float = LEASE_S) -> None:
        self.objects = objects
        self.key = key
        self.clock = clock
        self.lease_s = lease_s
        self.seq = 0
        self.since_ns = clock.now_ns()
        self.renewed = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _name(self, seq: int) -> str:
        return f"{self.key}.{seq:06d}.json"

    def _record(self, released: bool = False) -> bytes:
        doc = {**holder_me(), "since_ns": self.since_ns,
               "expires_ns": self.clock.now_ns() + int(self.lease_s * 1e9)}
        if released:
            doc["released"] = True
        return json.dumps(doc).encode()

    def claim(self) -> bool:
        """Write the first record; False when the key is taken."""
        return self.objects.put_once(self._name(0), self._record())

    def start(self) -> None:
        """Renew the lease every lease/4 seconds until release."""
        self._thread = threading.Thread(target=self._keep, name="twofold-lease", daemon=True)
        self._thread.start()

    def _keep(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            with suppress(StoreError):  # retried at the next turn; check() tells the engine
                self._next(self._record())
                self.renewed = time.monotonic()

    def _next(self, data: bytes) -> None:
        self.objects.put_once(self._name(self.seq + 1), data)
        self.seq += 1
        self.objects.delete(self._name(self.seq - 1))

    def check(self) -> None:
        """StoreError when the lease could not be renewed in time (others may take it)."""
        if time.monotonic() - self.renewed > self.lease_s:
            raise StoreError(f"lost the lock on {self.objects.describe()}: it could not be "
                             f"renewed for {self.lease_s:.0f} s", "check the network, then "
                             "run again")

    def release(self, mark: bool) -> None:
        """Stop renewing; `mark`: leave one record saying released (the exclusive lock's
        top generation must stay), else delete the records."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with suppress(StoreError):
            if mark:
                self._next(self._record(released=True))
            else:
                self.objects.delete(self._name(self.seq))


def _generation(key: str) -> int:
    tail = key[len(EXCLUSIVE):]
    return int(tail) if tail.isdigit() else -1


@contextmanager
def exclusive(objects: ObjectStore, clock: Clock) -> Iterator[Lease]:
    """Hold the store's exclusive lock (delete, prune): refused while another holder's
    lease is live or any create runs; stale locks are removed."""
    held = records(objects, EXCLUSIVE)
    top = max(held, key=_generation, default=None)
    if top is not None and (doc := live(objects, held[top], clock)) is not None:
        raise busy(objects, top, doc, "images are being deleted")
    mine = Lease(objects, f"{EXCLUSIVE}{_generation(top) + 1 if top else 1:010d}", clock)
    if not mine.claim():
        raise busy(objects, mine.key, None, "images are being deleted")
    higher = [k for k in records(objects, EXCLUSIVE) if _generation(k) > _generation(mine.key)]
    if higher:
        mine.release(mark=False)
        raise busy(objects, higher[0], None, "images are being deleted")
    try:
        for names in held.values():
            for name in names:
                objects.delete(name)
        for key, names in records(objects, CREATE).items():
            doc = live(objects, names, clock)
            if doc is not None:
                raise busy(objects, key, doc, "an image is being created")
            for name in names:
                objects.delete(name)
        mine.start()
        yield mine
    finally:
        mine.release(mark=True)


@contextmanager
def creating(objects: ObjectStore, clock: Clock) -> Iterator[Lease]:
    """Mark a create (or a copy into the store) as running; many may run at once. Refused
    while a delete or prune holds the exclusive lock, which could free the chunks this
    create reuses."""
    host = socket.gethostname().replace(".", "_")
    mine = Lease(objects, f"{CREATE}{host}-{os.getpid()}-{os.urandom(4).hex()}", clock)
    mine.claim()
    try:
        held = records(objects, EXCLUSIVE)
        top = max(held, key=_generation, default=None)
        if top is not None and (doc := live(objects, held[top], clock)) is not None:
            raise busy(objects, top, doc, "images are being deleted")
        mine.start()
        yield mine
    finally:
        mine.release(mark=False)
