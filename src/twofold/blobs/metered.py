"""An ObjectStore that passes every call to another and counts the bytes and calls that
went each way (for benchmarks and statistics; a base for wrappers that inject faults)."""

from __future__ import annotations

import threading

from twofold.blobs.objects import ObjectInfo, ObjectStore


class Metered:
    """`inner`, with `bytes_sent`, `bytes_received` and `calls` counted (thread-safe)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.writers = inner.writers
        self.bytes_sent = 0
        self.bytes_received = 0
        self.calls = 0
        self._lock = threading.Lock()

    def _count(self, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            self.bytes_sent += sent
            self.bytes_received += received
            self.calls += 1

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Pass on."""
        self._count()
        return self.inner.list(prefix)

    def get(self, name: str) -> bytes:
        """Pass on."""
        data = self.inner.get(name)
        self._count(received=len(data))
        return data

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Pass on."""
        data = self.inner.get_range(name, offset, length)
        self._count(received=len(data))
        return data

    def put_once(self, name: str, data: bytes) -> bool:
        """Pass on; the bytes count as sent when they were stored."""
        stored = self.inner.put_once(name, data)
        self._count(sent=len(data) if stored else 0)
        return stored

    def delete(self, name: str) -> None:
        """Pass on."""
        self._count()
        self.inner.delete(name)

    def exists(self, name: str) -> bool:
        """Pass on."""
        self._count()
        return self.inner.exists(name)

    def describe(self) -> str:
        """The inner store's."""
        return self.inner.describe()

    def discard_partial(self) -> int:
        """Pass on."""
        self._count()
        return self.inner.discard_partial()
