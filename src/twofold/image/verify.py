"""`verify`: re-read every chunk an image needs and check it against its id; damage is
named by image, area and byte range on the disk, damaged manifests and index files by
name, and every copy found damaged is recorded in the store (bad/) so no run reuses it."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from twofold.blobs.objects import StoreError
from twofold.chunks.chunkstore import ChunkStore
from twofold.chunks.workers import WORKERS
from twofold.core.clock import Clock
from twofold.core.models import Issue
from twofold.core.progress import Progress
from twofold.image.manifest import Manifest, ManifestError, chunk_spans
from twofold.image.repo import Manifests, Target, load_manifest, open_store, read_manifests


@dataclass(frozen=True)
class Damage:
    """A damaged or missing chunk, where an image needs it."""

    image: str
    area: str
    start: int  # first byte on the source disk (or volume) the chunk covers
    end: int  # first byte after it
    message: str

    def __str__(self) -> str:
        return f"image {self.image}, {self.area}, bytes {self.start}-{self.end}: {self.message}"


@dataclass
class VerifyResult:
    """What verify checked and found."""

    images: list[str]
    bad_ids: set[bytes] = field(default_factory=set)  # chunks damaged or missing
    chunks: int = 0
    bytes: int = 0
    seconds: float = 0.0
    damages: list[Damage] = field(default_factory=list)
    damaged_manifests: dict[str, str] = field(default_factory=dict)
    damaged_files: dict[str, str] = field(default_factory=dict)  # index files, bad lists
    recorded_bad: int = 0  # damaged copies written to the store's bad-chunk list
    record_failed: str = ""  # why they could not be recorded (a read-only store)

    @property
    def sound(self) -> bool:
        """True when nothing damaged was found."""
        return not (self.damages or self.damaged_manifests or self.damaged_files)


def check_chunks(store: ChunkStore, ids: list[bytes], progress: Progress,
                 done: Callable[[bytes, bytes | None, str], None]) -> None:
    """Load and check each chunk in `ids` (in store order, in parallel); call
    done(id, data or None, problem) for each, in that order, from this thread."""
    def key(cid: bytes) -> tuple[str, int]:
        loc = store.location(cid)
        return (loc.pack, loc.offset) if loc else ("", 0)

    def work(cid: bytes) -> tuple[bytes | None, str]:
        try:
            return store.load(cid), ""
        except StoreError as err:
            return None, err.message

    pending: deque[tuple[bytes, Future[tuple[bytes | None, str]]]] = deque()
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="twofold-check") as pool:
        for cid in sorted(ids, key=key):
            pending.append((cid, pool.submit(work, cid)))
            if len(pending) >= WORKERS * 3:
                first, fut = pending.popleft()
                done(first, *fut.result())
        while pending:
            first, fut = pending.popleft()
            done(first, *fut.result())


def _manifests(store: ChunkStore, image: str | None) -> Manifests:
    if image is None:
        return read_manifests(store.objects)
    try:
        return Manifests([load_manifest(store.objects, image)])
    except ManifestError as err:
        return Manifests([], {image: err.message})


def verify(target: Target, image: str | None, progress: Progress, clock: Clock
           ) -> VerifyResult:
    """Check every chunk of `image` (or of every image) in the store at `target`."""
    started = clock.now_ns()
    store = open_store(target)
    found = _manifests(store, image)
    manifests = found.good
    result = VerifyResult([m.name for m in manifests], damaged_manifests=found.damaged,
                          damaged_files={**store.damaged_files, **store.damaged_packs})
    for name, problem in {**found.damaged, **result.damaged_files}.items():
        progress.issue(Issue(name.encode(), "damaged", problem))
    users: dict[bytes, list[tuple[Manifest, str, int, int]]] = {}
    sizes: dict[bytes, int] = {}
    for m in manifests:
        for area in m.areas:
            for ref, pieces in chunk_spans(area, m.chunk_size):
                if ref.id is None:
                    continue
                start = area.start + pieces[0][0]
                end = area.start + pieces[-1][0] + pieces[-1][1]
                users.setdefault(ref.id, []).append((m, area.label, start, end))
                sizes[ref.id] = ref.length
            for length, cid in area.file_chunks():  # records and files of a live partition
                users.setdefault(cid, []).append((m, f"{area.label} files", area.start,
                                                  area.start + area.size))
                sizes[cid] = length
    progress.phase("verifying", total_bytes=sum(sizes.values()))

    def done(cid: bytes, data: bytes | None, problem: str) -> None:
        result.chunks += 1
        result.bytes += sizes[cid]
        progress.advance(nbytes=sizes[cid])
        if data is None:
            result.bad_ids.add(cid)
            for m, label, start, end in users[cid]:
                damage = Damage(m.name, label, start, end, problem)
                result.damages.append(damage)
                progress.issue(Issue(m.name.encode(), "damaged", str(damage)))

    check_chunks(store, list(users), progress, done)
    result.recorded_bad, result.record_failed = record_bad(store, clock)
    result.damages.sort(key=lambda d: (d.image, d.start))
    result.seconds = (clock.now_ns() - started) / 1e9
    return result


def record_bad(store: ChunkStore, clock: Clock) -> tuple[int, str]:
    """Write the damaged copies `store` found to its bad-chunk list: (how many, "") or
    (0, why not) when the store cannot be written (a DVD, a read-only share)."""
    try:
        return store.record_bad(clock.now_ns()), ""
    except StoreError as err:
        return 0, err.message
