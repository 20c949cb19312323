"""`copy`: replicate images from one store to another (the drive to offsite), sending
only the chunks the destination lacks. Every chunk is checked against its id before it is
sent and read back from the destination before the manifest is written, last; a killed
copy is resumed by the next (its packs are found through their footers). An encrypted
store is copied into a new store that takes its key files, so both hold the same master
key and the chunks, ids and sealed bytes, move as they are."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from twofold.blobs.objects import ObjectStore, StoreError
from twofold.chunks.chunkstore import ChunkStore, Location
from twofold.chunks.indexfiles import STORE_FILE
from twofold.chunks.workers import WORKERS
from twofold.core.clock import Clock
from twofold.core.progress import Progress
from twofold.image.errors import ImageDamaged, ImageRefused
from twofold.image.manifest import Manifest, manifest_object
from twofold.image.repo import (
    Target,
    claim_drive,
    creating,
    load_manifest,
    open_objects,
    open_store,
    read_manifests,
)
from twofold.image.verify import check_chunks, record_bad
from twofold.vault.objects import VaultObjects, key_names, plain_objects, vault_of

RUN_BYTES = 8 << 20
"""Chunks next to each other in a source pack are fetched together, up to this much."""
GAP_BYTES = 256 << 10


@dataclass
class CopyResult:
    """What a copy did."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the destination
    chunks_sent: int = 0
    bytes_sent: int = 0  # stored (compressed) chunk bytes sent
    chunks_present: int = 0  # needed chunks the destination already held
    chunks_checked: int = 0
    seconds: float = 0.0
    damaged: dict[str, str] = field(default_factory=dict)  # source manifests not copied


Run = tuple[str, int, int, list[tuple[bytes, Location]]]  # pack, start, end, chunks


def _runs(source: ChunkStore, ids: list[bytes]) -> Iterator[Run]:
    """The chunks to fetch as ranged reads: by pack and offset, neighbours merged."""
    located = sorted((loc.pack, loc.offset, cid, loc) for cid in ids
                      if (loc := source.location(cid)) is not None)
    run: Run | None = None
    for pack, offset, cid, loc in located:
        end = offset + loc.length
        if run and run[0] == pack and offset - run[2] <= GAP_BYTES and \
                end - run[1] <= RUN_BYTES:
            run = (pack, run[1], end, [*run[3], (cid, loc)])
            continue
        if run:
            yield run
        run = (pack, offset, end, [(cid, loc)])
    if run:
        yield run


def _fetch(source: ChunkStore, run: Run) -> list[tuple[bytes, bytes, int]]:
    """(id, stored bytes, plain length) of a run's chunks, each checked against its id."""
    pack, start, end, chunks = run
    data = source.objects.get_range(pack, start, end - start)
    out = []
    for cid, loc in chunks:
        stored = data[loc.offset - start:loc.offset - start + loc.length]
        if not source.sound(cid, stored, loc.plain_length):
            source.forget(cid, pack)
            raise ImageDamaged(f"chunk {cid.hex()} in {pack} of the source fails its check",
                               "nothing was listed in the destination; run twofold image "
                               "verify on the source to see which images it harms")
        out.append((cid, stored, loc.plain_length))
    return out


def _send(source: ChunkStore, dest: ChunkStore, ids: list[bytes], progress: Progress,
          result: CopyResult) -> None:
    """Fetch and check in parallel; add to the destination's packs in order."""
    workers = max(WORKERS, source.objects.writers)
    pending: deque[Future[list[tuple[bytes, bytes, int]]]] = deque()

    def take() -> None:
        for cid, stored, plain in pending.popleft().result():
            if dest.add(cid, stored, plain):
                result.chunks_sent += 1
                result.bytes_sent += len(stored)
            progress.advance(nbytes=len(stored))

    with ThreadPoolExecutor(workers, thread_name_prefix="twofold-fetch") as pool:
        try:
            for run in _runs(source, ids):
                pending.append(pool.submit(_fetch, source, run))
                if len(pending) >= workers * 2:
                    take()
            while pending:
                take()
        finally:
            for fut in pending:
                fut.cancel()


def _missing_in(store: ChunkStore, m: Manifest) -> list[bytes]:
    return [c for c in m.chunk_ids() if store.location(c) is None]


def copy(src: Target, dst: Target, images: list[str] | None, progress: Progress,
         clock: Clock) -> CopyResult:
    """Copy `images` (default: all) from the store at `src` to the one at `dst`."""
    started = clock.now_ns()
    source = open_store(src)
    objects = open_objects(dst)
    objects = _same_keys(source, objects)
    result = CopyResult()
    if images:
        wanted = [load_manifest(source.objects, n) for n in images]
    else:
        found = read_manifests(source.objects)
        wanted, result.damaged = found.good, found.damaged
    for m in wanted:
        if (lack := _missing_in(source, m)):
            raise ImageDamaged(f"image {m.name} needs {len(lack)} chunk(s) the source "
                               "store does not hold", "run twofold image verify on it")
    drive = claim_drive(objects)
    with creating(objects, clock) as lease:
        dest = ChunkStore(objects, chunk_size=source.chunk_size)
        dest.init(drive)
        if dest.chunk_size != source.chunk_size:
            raise StoreError(f"{objects.describe()} holds chunks of {dest.chunk_size} bytes, "
                             f"the source {source.chunk_size}",
                             "copy into a new or empty store")
        dest.load_index(repair=True)  # packs a killed copy stored are not sent again
        todo: list[Manifest] = []
        for m in wanted:
            if objects.exists(manifest_object(m.name)):
                result.skipped.append(m.name)
            else:
                todo.append(m)
        needed = sorted(set().union(*(m.chunk_ids() for m in todo)))
        missing = [c for c in needed if dest.location(c) is None]
        result.chunks_present = len(needed) - len(missing)
        progress.phase("copying", total_bytes=sum(
            loc.length for c in missing if (loc := source.location(c)) is not None))
        try:
            _send(source, dest, missing, progress, result)
        except ImageDamaged:
            record_bad(source, clock)  # no later run reuses those copies
            raise
        dest.commit_index()
        _check(open_store(objects), missing, needed, progress, result)
        lease.check()
        for m in todo:
            obj = manifest_object(m.name)
            objects.put_once(obj, source.objects.get(obj))
            result.copied.append(m.name)
    result.seconds = (clock.now_ns() - started) / 1e9
    return result


def _same_keys(source: ChunkStore, objects: ObjectStore) -> ObjectStore:
    """The destination's objects, sealed as the source's are: a plain store stays plain;
    from an encrypted source, a new destination takes the source's key files (written
    first) and its vault, and an encrypted one must hold the same master key. Anything
    else is refused before a byte is written (chunk ids are keyed by the master key, so
    chunks cannot cross from one key to another, or between plain and encrypted)."""
    theirs = vault_of(objects)
    if source.vault is None:
        if theirs is not None:
            raise ImageRefused(f"{objects.describe()} is an encrypted store and "
                               f"{source.objects.describe()} a plain one",
                               "copy into a new store or a plain one")
        return objects
    if theirs is not None:
        if not theirs.same_key(source.vault):
            raise ImageRefused(f"{objects.describe()} is encrypted under another master key "
                               f"than {source.objects.describe()}",
                               "copy into a new store: it takes the source's key")
        return objects
    if objects.exists(STORE_FILE):
        raise ImageRefused(f"{objects.describe()} is a plain store and "
                           f"{source.objects.describe()} an encrypted one",
                           "copy into a new store: it takes the source's key")
    keys = plain_objects(source.objects)  # the same passphrase opens the copy: its key
    return VaultObjects(objects, source.vault,  # files go in before the first object
                        [keys.get(name) for name in key_names(keys)])


def _check(dest: ChunkStore, sent: list[bytes], needed: list[bytes], progress: Progress,
           result: CopyResult) -> None:
    """Every needed chunk is indexed in the destination, and each sent one reads back."""
    lost = [c for c in needed if dest.location(c) is None]
    if lost:
        raise ImageDamaged(f"{len(lost)} chunk(s) are not in {dest.objects.describe()} "
                           "after the copy", "run the copy again")
    progress.phase("checking", total_bytes=sum(
        loc.plain_length for c in sent if (loc := dest.location(c)) is not None))

    def done(cid: bytes, data: bytes | None, problem: str) -> None:
        if data is None:
            raise ImageDamaged(f"chunk {cid.hex()} does not read back from "
                               f"{dest.objects.describe()}: {problem}", "run the copy again")
        result.chunks_checked += 1
        progress.advance(nbytes=len(data))

    check_chunks(dest, sent, progress, done)
