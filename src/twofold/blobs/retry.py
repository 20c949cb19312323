"""Retries with exponential backoff for the network stores: a transient failure (a
dropped connection, a timeout, a server error) is tried again until a time budget runs
out; then the run ends with one clear StoreError."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeVar

from twofold.blobs.objects import ObjectMissing, StoreError

T = TypeVar("T")

RETRY_ENV = "TWOFOLD_RETRY_SECONDS"
"""How long a network store keeps retrying one operation before giving up."""
DEFAULT_BUDGET = 60.0


class Transient(Exception):
    """Raised by a backend for a failure worth retrying; carries a credential-free text."""


class Gone(Exception):
    """Raised by a backend's call: the object does not exist."""


class Taken(Exception):
    """Raised by a backend's call: the name is taken (a put-once lost)."""


def read_or_missing(read: Callable[[], bytes], name: str, where: str) -> bytes:
    """`read()`, with Gone turned into ObjectMissing naming the object and the store."""
    try:
        return read()
    except Gone:
        raise ObjectMissing(f"{name} is missing from the store {where}") from None


def found(probe: Callable[[], object]) -> bool:
    """False when `probe()` raises Gone, else True."""
    try:
        probe()
    except Gone:
        return False
    return True


@dataclass
class RetryPolicy:
    """Backoff from `first` seconds, doubling up to `cap`, with jitter, for at most
    `budget` seconds in all. Once it gave up, later calls (a run's cleanup) try once."""

    budget: float = DEFAULT_BUDGET
    first: float = 0.25
    cap: float = 8.0
    gave_up: bool = False

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """The policy, with the budget from TWOFOLD_RETRY_SECONDS when set."""
        text = os.environ.get(RETRY_ENV, "")
        try:
            return cls(budget=max(0.0, float(text))) if text else cls()
        except ValueError:
            return cls()

    def run(self, op: Callable[[], T], where: str, what: str,
            recover: Callable[[], None] | None = None) -> T:
        """`op()`; on Transient wait and retry (calling `recover` first, e.g. to
        reconnect) until the budget is spent, then StoreError naming `where` and `what`."""
        deadline = time.monotonic() + (0 if self.gave_up else self.budget)
        delay = self.first
        while True:
            try:
                return op()
            except Transient as err:
                last = str(err)
            left = deadline - time.monotonic()
            if left <= 0:
                self.gave_up = True
                raise StoreError(
                    f"the image store {where} is not answering ({what}: {last}); gave up "
                    f"after {self.budget:.0f} s of retries",
                    "check the network and the server, then run again: images already "
                    "listed are unharmed, and what this run stored is reused") from None
            time.sleep(min(left, delay * random.uniform(0.5, 1.0)))
            delay = min(self.cap, delay * 2)
            if recover is not None:
                with suppress(Transient):  # the next attempt fails the same way
                    recover()
