"""Read any byte range of an image (the whole disk, or one block-level area) straight from
the store's chunks: bytes no chunk holds read as zeros, a few decompressed chunks are kept,
and a chunk that is missing or fails its check is an ImageDamaged naming the chunk, never
wrong bytes. Safe to call from several threads; the store is only read."""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from itertools import pairwise

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

    starts: array[int]  # int64 arrays: 8 bytes a piece, and no numpy to import
    lengths: array[int]
    which: array[int]
    inner: array[int]
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
    if any(a > b for a, b in pairwise(starts)):  # areas out of disk order (rare)
        order = sorted(range(len(starts)), key=starts.__getitem__)
        starts, lengths, which, inner = ([v[i] for i in order]
                                         for v in (starts, lengths, which, inner))
    return _Pieces(array("q", starts), array("q", lengths), array("q", which),
                   array("q", inner), ids, where)


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
        return b"".join(self.views(offset, length))

    def views(self, offset: int, length: int) -> list[memoryview]:
        """The bytes `read` gives, as views of the cached chunks and of zeros, in order,
        nothing copied (an NBD server sends them as they are)."""
        end = min(self.size, offset + length)
        out: list[memoryview] = []
        pos = offset
        p = self._p
        i = max(0, bisect_right(p.starts, offset) - 1)
        while i < len(p.starts) and p.starts[i] < end:
            start, n = p.starts[i], p.lengths[i]
            lo, hi = max(start, offset), min(start + n, end)
            k = p.which[i]
            if lo < hi and k >= 0:
                out.extend(_zeros(lo - pos))
                data = self.cache.get(p.ids[k], p.where[k])
                first = p.inner[i] + lo - start
                out.append(memoryview(data)[first:first + hi - lo])
                pos = hi
            i += 1
        out.extend(_zeros(end - pos))
        return out

    def chunk_ids(self) -> list[bytes]:
        """The stored chunks this reader may need."""
        return list(self._p.ids)


_ZEROS = memoryview(bytes(1 << 20))


def _zeros(n: int) -> list[memoryview]:
    """`n` zero bytes as views of one shared block."""
    return [_ZEROS[:min(n - k, len(_ZEROS))] for k in range(0, max(n, 0), len(_ZEROS))]
