"""Read any byte range of an image (the whole disk, or one block-level area) straight from
the store's chunks: bytes no chunk holds read as zeros, a few decompressed chunks are kept,
and a chunk that is missing or fails its check is an ImageDamaged naming the chunk, never
wrong bytes. Safe to call from several threads; the store is only read."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from twofold.blobs.objects import StoreError
from twofold.chunks.chunkstore import ChunkStore
from twofold.image.errors import ImageDamaged
from twofold.image.manifest import Area, Manifest, chunk_spans

CACHED_CHUNKS = 16
"""Decompressed chunks kept (16 MiB at the default chunk size): a loop device and the file
system above it read the same chunk in many small pieces."""


@dataclass(frozen=True)
class _Pieces:
    """The stored pieces of a byte space, sorted by start: piece i covers
    [starts[i], starts[i] + lengths[i]) with bytes of chunk ids[which[i]] from inner[i]
    (which[i] == -1: an all-zero chunk)."""

    starts: np.ndarray
    lengths: np.ndarray
    which: np.ndarray
    inner: np.ndarray
    ids: list[bytes]
    where: list[str]  # per chunk: the area that needs it, for messages


def _pieces(areas: list[Area], chunk_size: int, shift: int) -> _Pieces:
    starts: list[int] = []
    lengths: list[int] = []
    which: list[int] = []
    inner: list[int] = []
    ids: list[bytes] = []
    where: list[str] = []
    number: dict[bytes, int] = {}
    for area in areas:
        for ref, pieces in chunk_spans(area, chunk_size):
            k = -1
            if ref.id is not None:
                k = number.setdefault(ref.id, len(ids))
                if k == len(ids):
                    ids.append(ref.id)
                    where.append(area.label)
            pos = 0
            for offset, length in pieces:
                starts.append(area.start + offset + shift)
                lengths.append(length)
                which.append(k)
                inner.append(pos)
                pos += length
    order = np.argsort(np.array(starts, dtype=np.int64), kind="stable")
    return _Pieces(np.array(starts, dtype=np.int64)[order],
                   np.array(lengths, dtype=np.int64)[order],
                   np.array(which, dtype=np.int64)[order],
                   np.array(inner, dtype=np.int64)[order], ids, where)


class ChunkCache:
    """Decompressed chunks by id, the last few kept; a chunk several threads ask for at
    once is loaded once. ImageDamaged, naming the chunk and `where`, when it cannot be."""

    def __init__(self, store: ChunkStore, image: str, cached: int = CACHED_CHUNKS) -> None:
        self.store, self.image, self.cached = store, image, cached
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[bytes, threading.Event] = {}

    def get(self, cid: bytes, where: str) -> bytes:
        """The plain data of chunk `cid`, which `where` (an area, a file) needs."""
        while True:
            with self._lock:
                data = self._cache.get(cid)
                if data is not None:
                    self._cache.move_to_end(cid)
                    return data
                waiting = self._loading.get(cid)
                if waiting is None:
                    mine = self._loading[cid] = threading.Event()
                    break
            waiting.wait()
        try:
            try:
                data = self.store.load(cid)
            except StoreError as err:
                raise ImageDamaged(
                    f"image {self.image}, {where}: chunk {cid.hex()} cannot be read: "
                    f"{err.message}",
                    "twofold image verify lists all damage; twofold image verify --heal "
                    "--from OTHER_STORE (or --source DISK) can mend it") from None
            with self._lock:
                self._cache[cid] = data
                while len(self._cache) > self.cached:
                    self._cache.popitem(last=False)
            return data
        finally:
            with self._lock:
                del self._loading[cid]
            mine.set()


class ImageReader:
    """Bytes of an image's disk (or of one of its block-level areas) by offset."""

    def __init__(self, store: ChunkStore, m: Manifest, area: Area | None = None,
                 cache: ChunkCache | None = None) -> None:
        if area is not None and area.files is not None:
            raise ValueError(f"{area.label} was taken at file level: it has no blocks")
        self.manifest = m
        self.size = m.size if area is None else area.size
        areas = [a for a in m.areas if a.files is None] if area is None else [area]
        self._p = _pieces(areas, m.chunk_size, 0 if area is None else -area.start)
        self.cache = cache or ChunkCache(store, m.name)

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (fewer at the end); ImageDamaged when a chunk they
        need is missing or damaged."""
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        out = bytearray(end - offset)
        p = self._p
        i = max(0, int(np.searchsorted(p.starts, offset, side="right")) - 1)
        while i < len(p.starts) and p.starts[i] < end:
            start, n = int(p.starts[i]), int(p.lengths[i])
            lo, hi = max(start, offset), min(start + n, end)
            k = int(p.which[i])
            if lo < hi and k >= 0:
                data = self.cache.get(p.ids[k], p.where[k])
                first = int(p.inner[i]) + lo - start
                out[lo - offset:hi - offset] = data[first:first + hi - lo]
            i += 1
        return bytes(out)

    def chunk_ids(self) -> list[bytes]:
        """The stored chunks this reader may need."""
        return list(self._p.ids)
