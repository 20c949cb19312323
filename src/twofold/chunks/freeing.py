"""Freeing chunks no image needs: packs holding none are deleted, packs holding some are
rewritten without them (a copy found damaged counts as unneeded), ordered so that it works
on a full drive. Functions over a ChunkStore (chunks/chunkstore.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twofold.blobs.objects import StoreFullError
from twofold.chunks.packs import PackEntry

if TYPE_CHECKING:
    from twofold.chunks.chunkstore import ChunkStore


def collect(store: ChunkStore, referenced: set[bytes], room: int | None = None
            ) -> tuple[int, int]:
    """Drop packs holding no referenced chunk and rewrite packs holding some
    unreferenced ones. Returns (packs removed or rewritten, bytes freed).

    Ordered to work on a full drive: packs no image needs are deleted first (an old
    index file naming a pack that is gone is read past), then the others are rewritten,
    fewest live bytes first, a batch at a time (at most half the `room` the drive
    has), each old pack deleted once its live chunks are stored; a rewrite the drive
    has no room for keeps the old pack. The index comes last."""
    sizes = {o.name: o.size for o in store.objects.list() if o.name.endswith(".pack")}
    dead: list[str] = []
    mixed: list[tuple[int, str]] = []
    for pack, entries in store.packs.items():  # a copy found damaged is never kept
        live = sum(e.length for e in entries if _keeps(store, e, pack, referenced))
        if live == 0:
            dead.append(pack)
        elif any(not _keeps(store, e, pack, referenced) for e in entries):
            mixed.append((live, pack))
    if not dead and not mixed:
        return 0, 0
    freed = 0
    for pack in dead:
        store.drop_pack(pack)
        store.objects.delete(pack)
        freed += sizes.get(pack, 0)
    limit = store.pack_limit // 2
    batch = limit if room is None else min(limit, room // 2)
    freed += _rewrite(store, [p for _, p in sorted(mixed)], referenced, sizes, batch)
    store.settle()
    old_index = list(store.index_files)
    store.index_files = []
    written = store.write_index(list(store.packs))  # one index for all that is live,
    for name in old_index:                          # then drop the old ones
        if name != written:  # an old one may hold the very same bytes
            store.objects.delete(name)
    return len(dead) + len(mixed), freed


def _keeps(store: ChunkStore, e: PackEntry, pack: str, referenced: set[bytes]) -> bool:
    """True when a pack's entry is a chunk an image needs and not a copy found bad."""
    return e.chunk_id in referenced and (e.chunk_id, pack) not in store.bad


def _rewrite(store: ChunkStore, packs: list[str], referenced: set[bytes],
             sizes: dict[str, int], batch: int) -> int:
    """Copy the referenced chunks of `packs` into new packs, deleting each batch of old
    packs once what they held is stored; returns the bytes freed (old packs deleted,
    less the new ones written)."""
    freed = 0
    waiting: dict[str, list[PackEntry]] = {}
    written = store.new_bytes  # when this batch began
    for i, pack in enumerate(packs):
        waiting[pack] = store.drop_pack(pack)
        try:
            for e in waiting[pack]:
                if _keeps(store, e, pack, referenced) and not store.has(e.chunk_id):
                    store.add(e.chunk_id, store.objects.get_range(pack, e.offset, e.length),
                              e.plain_length)
            if store.building_bytes - store.new_bytes < batch and i + 1 < len(packs):
                continue
            store.flush()
            store.wait_writes()
        except StoreFullError:  # no room to rewrite: this batch's old packs stay
            store.drop_session()
            for old, entries in waiting.items():
                store.add_pack(old, entries)
            return freed
        for old in waiting:
            store.objects.delete(old)
            freed += sizes.get(old, 0)
        freed -= store.new_bytes - written
        store.settle()  # settled: never dropped by a later batch's failure
        waiting, written = {}, store.new_bytes
    return freed
