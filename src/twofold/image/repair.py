"""`image repair`: make a store's own bookkeeping sound again. store.json is made anew
when damaged; every pack's header and own index are read and compared with the index
files, which are rebuilt from the packs when any is damaged, wrong or missing; a pack
whose header or own index is damaged while an index file still finds its chunks is
written anew from those chunks (each checked); damaged bad-chunk lists go; damaged
manifests and unreadable packs are named (their data cannot be made up here: `verify
--heal` and `delete` are the ways on)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from twofold.blobs.objects import ObjectMissing, ObjectStore, StoreError
from twofold.chunks.chunkstore import CHUNK_SIZE, ChunkStore, volume_of
from twofold.chunks.indexfiles import MarkerDamaged
from twofold.chunks.packs import (
    PACK_MAGIC,
    PackDamaged,
    PackEntry,
    pack_name,
)
from twofold.core.clock import Clock
from twofold.core.models import Issue
from twofold.core.progress import Progress
from twofold.image.repo import Target, exclusive, open_objects, read_manifests


@dataclass
class RepairResult:
    """What repair found and did."""

    store: str
    marker_remade: bool = False
    packs: int = 0
    index_files_damaged: dict[str, str] = field(default_factory=dict)  # removed
    packs_reindexed: int = 0  # packs no sound index file described rightly
    index_written: str = ""
    packs_damaged: dict[str, str] = field(default_factory=dict)  # own index unreadable
    packs_kept_by_index: list[str] = field(default_factory=list)  # ... but indexed
    packs_rewritten: list[str] = field(default_factory=list)  # those, written anew
    manifests_damaged: dict[str, str] = field(default_factory=dict)
    temp_removed: int = 0

    @property
    def remaining(self) -> bool:
        """True when damage remains that repair could not mend."""
        return bool(self.manifests_damaged or
                    set(self.packs_damaged) - set(self.packs_rewritten))


def _marker(store: ChunkStore, objects: ObjectStore, result: RepairResult) -> None:
    """Check store.json; make it anew when damaged, with the images' chunk size."""
    try:
        store.check()
    except MarkerDamaged:
        sizes = Counter(m.chunk_size for m in read_manifests(objects).good)
        store.remake_marker(sizes.most_common(1)[0][0] if sizes else CHUNK_SIZE)
        result.marker_remade = True
    except ObjectMissing:
        raise StoreError(f"no image store at {objects.describe()}") from None


def repair(target: Target, progress: Progress, clock: Clock) -> RepairResult:
    """Repair the store at `target` (under its exclusive lock)."""
    objects = open_objects(target)
    result = RepairResult(objects.describe())
    if not objects.list():  # nothing to repair: no lock written into a stranger's folder
        raise StoreError(f"no image store at {objects.describe()}",
                         "give the TARGET that images were created in")
    with exclusive(objects, clock) as lease:
        store = ChunkStore(objects)
        _marker(store, objects, result)
        progress.phase("reading indexes")
        store.load_index(repair=False)
        result.index_files_damaged = dict(store.damaged_files)
        result.packs_damaged = dict(store.damaged_packs)
        sizes = {o.name: o.size for o in objects.list() if o.name in store.packs}
        progress.phase("reading packs", total_files=len(sizes))
        own: dict[str, list[PackEntry]] = {}
        for pack, size in sorted(sizes.items()):
            progress.advance(files=1)
            try:
                if objects.get_range(pack, 0, len(PACK_MAGIC)) != PACK_MAGIC:
                    raise PackDamaged(f"pack {pack} has a damaged header")
                own[pack] = store.read_pack_index(pack, size)
            except PackDamaged as err:
                result.packs_damaged[pack] = err.message  # an index file still finds it
                result.packs_kept_by_index.append(pack)
                continue
            if pack not in store.indexed_by or \
                    sorted(own[pack], key=_key) != sorted(store.packs[pack], key=_key):
                result.packs_reindexed += 1
                for name in store.indexed_by.get(pack, []):
                    result.index_files_damaged.setdefault(
                        name, f"{name} does not describe {pack} as the pack does")
        result.packs = len(sizes)
        lease.check()
        moved = _rewrite(store, result.packs_kept_by_index)
        result.packs_rewritten = list(moved)
        if result.packs_reindexed or result.index_files_damaged or moved:
            everything = {p: own.get(p, store.packs.get(p, [])) for p in sizes
                          if p not in moved}
            everything.update({p: store.packs[p] for p in moved.values()})
            result.index_written = store.reindex(everything, keep=[])
        for old, new in moved.items():  # only once the new index names their chunks
            if old != new:
                objects.delete(old)
        for name in store.bad_files:
            if name in result.index_files_damaged:
                objects.delete(name)
        result.manifests_damaged = read_manifests(objects).damaged
        result.temp_removed = objects.discard_partial()
    for name, problem in {**result.index_files_damaged, **result.packs_damaged,
                          **result.manifests_damaged}.items():
        progress.issue(Issue(name.encode(), "damaged", problem))
    return result


def _rewrite(store: ChunkStore, packs: list[str]) -> dict[str, str]:
    """Write anew each of `packs` whose chunks (found through the index files) all check
    out; returns old pack -> new pack. A pack holding a chunk that does not check out is
    left as it is (verify names it)."""
    done: dict[str, str] = {}
    for pack in packs:
        builder = store.new_builder()
        for e in store.packs[pack]:
            stored = store.objects.get_range(pack, e.offset, e.length)
            if not store.sound(e.chunk_id, stored, e.plain_length):
                break
            builder.add(e.chunk_id, stored, e.plain_length)
        else:
            data = builder.build()
            name = pack_name(data, volume_of(pack))
            if name == pack:  # the very bytes it had before the damage
                store.objects.delete(pack)
            store.objects.put_once(name, data)
            store.replace_pack(pack, name, builder.entries)
            done[pack] = name
    return done


def _key(e: PackEntry) -> tuple[int, bytes]:
    return e.offset, e.chunk_id
