"""`create`: read the used data of a disk, partition or image file, cut it into chunks,
store the new ones, and write the manifest last."""

from __future__ import annotations

import os
import stat
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import NoReturn

from twofold.blobs.objects import ObjectStore, StoreFullError
from twofold.chunks.chunkstore import ChunkStore
from twofold.chunks.lease import CREATE, Lease, records
from twofold.chunks.workers import FILE_READERS, WORKERS
from twofold.core.clock import Clock
from twofold.core.models import Issue
from twofold.core.progress import Progress
from twofold.fsinfo.blockio import FileReader, PieceReadError, read_pieces
from twofold.fsinfo.fsbitmap import merge_extents
from twofold.fsinfo.fsparams import SNAPSHOT
from twofold.fsinfo.volume import DriveId
from twofold.image.btrfssnap import btrfs_snapshots
from twofold.image.errors import ImageExists, ImageRefused, SourceMissing, SourceReadError
from twofold.image.filelevel import image_files, previous
from twofold.image.livesource import LiveVolume, live_volumes
from twofold.image.lvmsnap import lvm_view
from twofold.image.manifest import (
    Area,
    ChunkRef,
    Extent,
    Manifest,
    cell_pieces,
    check_image_name,
    manifest_object,
)
from twofold.image.parent import find_parent, parent_cells, within
from twofold.image.repo import (
    Target,
    claim_drive,
    creating,
    local_of,
    open_objects,
    open_store,
)
from twofold.image.source import plan_image, related_devices, table_doc
from twofold.image.space import (
    MARGIN,
    Budget,
    NoSpace,
    free_bytes,
    keep_reserve,
    sample_need,
)

LEVELS = {"fast": 1, "balanced": 3, "max": 19}


@dataclass
class CreateResult:
    """What a create did."""

    name: str
    kind: str
    size: int
    used_bytes: int = 0
    stored_new_bytes: int = 0
    new_chunks: int = 0
    reused_chunks: int = 0
    zero_chunks: int = 0
    seconds: float = 0.0
    issues: list[Issue] = field(default_factory=list)
    drive: DriveId | None = None  # the drive a local store is on
    taken: list[tuple[str, str]] = field(default_factory=list)  # (area, "blocks"/"file level")
    cleaned: list[str] = field(default_factory=list)  # snapshots of killed runs removed

    @property
    def ratio(self) -> float:
        """Used bytes per stored new byte (0 when nothing new was stored)."""
        return self.used_bytes / self.stored_new_bytes if self.stored_new_bytes else 0.0

    def as_dict(self) -> dict[str, object]:
        """For the manifest's stats and --json."""
        return {"used_bytes": self.used_bytes, "stored_new_bytes": self.stored_new_bytes,
                "new_chunks": self.new_chunks, "reused_chunks": self.reused_chunks,
                "zero_chunks": self.zero_chunks, "seconds": round(self.seconds, 3)}


Work = tuple[bytes | None, bytes | None, list[Extent]]  # id (None: zeros), new bytes, pieces


def _read_pieces(reader: FileReader, start: int, pieces: list[Extent]) -> memoryview:
    """The bytes of `pieces` back to back, in this thread's buffer (blockio.read_pieces)."""
    try:
        return read_pieces(reader, start, pieces)
    except PieceReadError as err:
        if err.cause is None:
            raise SourceReadError(f"the source ended early at byte {err.offset}",
                                  "did the device shrink or go away?") from None
        raise SourceReadError(
            f"reading the source failed at byte {err.offset}: "
            f"{err.cause.strerror or err.cause}",
            "the disk may be failing; copy it with ddrescue first, then image the copy"
        ) from err.cause


def _chunk_work(reader: FileReader, start: int, pieces: list[Extent], store: ChunkStore,
                level: int, before: tuple[list[Extent], bytes | None] | None) -> Work:
    """Read, hash and (when new) compress one chunk; runs in a worker thread. `before`:
    the previous image's pieces and id for this cell, tried first when they cover ours."""
    if before is not None:
        old = _read_pieces(reader, start, before[0])
        old_id = store.id_of(old)
        zero = store.is_zero(old_id, old)
        if before[1] is None and zero:
            return None, None, before[0]
        if not zero and old_id == before[1]:  # stored again when found damaged
            stored = None if store.has(before[1]) else store.stored_form(before[1], old, level)
            return before[1], stored, before[0]
    data = _read_pieces(reader, start, pieces)
    cid = store.id_of(data)
    if store.is_zero(cid, data):
        return None, None, pieces
    if store.has(cid):
        return cid, None, pieces
    return cid, store.stored_form(cid, data, level), pieces


Job = tuple[Area, int, list[Extent], tuple[list[Extent], bytes | None] | None]


def _chunks(areas: list[Area], chunk_size: int, parent: Manifest | None) -> Iterator[Job]:
    for area in areas:
        cells = parent_cells(parent, area, chunk_size)
        for cell, pieces in cell_pieces(area.extents, chunk_size):
            before = cells.get(cell)
            if before is not None and (before[0] == pieces or not within(pieces, before[0])):
                before = None  # the same pieces anyway, or blocks the old image lacks
            yield area, cell, pieces, before


def create(source: str, target: Target, name: str | None, level: int,
           volume_size: int | None, force: bool, progress: Progress, clock: Clock,
           seen_drive: DriveId | None = None, allow_system_disk: bool = False
           ) -> CreateResult:
    """Image `source` (a disk, partition or image file) into the store at `target`
    (`seen_drive`, `allow_system_disk`: see repo.open_store)."""
    started = clock.now_ns()
    if not 1 <= level <= 22:
        raise ImageRefused(f"compression level {level} is outside 1..22")
    if not os.path.exists(source):
        raise SourceMissing(f"the source {source} does not exist",
                            "give a disk (/dev/sda), a partition or an image file; "
                            "`twofold drives` lists the disks")
    mode = os.stat(source).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        raise ImageRefused(f"the source {source} is neither a block device nor an image file",
                           "give a disk (/dev/sda), a partition (/dev/sda2) or a disk.img")
    live = live_volumes(source)  # refuses a source held otherwise
    if name is None:
        base = os.path.basename(os.path.normpath(source)).replace(" ", "_") or "disk"
        stamp = _stamp(started)
        name = f"{base}-{stamp}"
    check_image_name(name)
    objects = open_objects(target)  # a network store starts connecting while we plan
    with FileReader(source) as disk, lvm_view(related_devices(source), disk) as lvm:
        reader = lvm.reader  # mounted logical volumes read from their snapshots
        if reader.size == 0:
            raise ImageRefused(f"the source {source} is empty")
        progress.phase("planning")
        plan = plan_image(reader, source, force, live)
        lvm.apply(plan.areas)
        _check_live_planned(plan.areas, live, source)
        for issue in plan.issues:
            progress.issue(issue)
        drive = claim_drive(objects, seen_drive, allow_system_disk)
        with creating(objects, clock) as lease, \
                ThreadPoolExecutor(1, thread_name_prefix="twofold-parent") as aside:
            # the parent's manifest is fetched while the index loads: both are round trips
            parent_job = aside.submit(find_parent, objects, os.path.abspath(source),
                                      plan.kind, plan.size)
            store = open_store(objects, volume_size, write=True, drive=drive)
            guard = local.guard if (local := local_of(objects)) is not None else None
            if store.objects.exists(manifest_object(name)):
                raise ImageExists(f"an image named {name!r} already exists",
                                  "choose another --name, or delete the old image first")
            result = CreateResult(name, plan.kind, plan.size, issues=plan.issues)
            result.used_bytes = sum(a.used_bytes for a in plan.areas)
            result.cleaned.extend(f"LVM snapshot {n}" for n in lvm.cleaned)
            budget = _budget(reader, plan.areas, store, level, result.used_bytes, progress)
            parent, manifests = parent_job.result()
            for bad_name, problem in manifests.damaged.items():
                issue = Issue(bad_name.encode(), "damaged", f"{problem} (skipped)")
                result.issues.append(issue)
                progress.issue(issue)
            progress.phase("imaging", total_bytes=result.used_bytes)
            try:
                _run(reader, plan.areas, store, level, result, progress, parent, budget)
                _take_files(plan.areas, live, store, level, result, progress, objects, parent)
                result.taken = [(label, lvm.taken.get(number, how)) for (label, how), number
                                in zip(result.taken, _numbers(plan.areas), strict=True)]
                progress.phase("finishing")
                store.commit_index()
            except (NoSpace, StoreFullError) as err:
                _give_up(store, lease, budget, err)
            result.stored_new_bytes = store.new_bytes
            result.seconds = (clock.now_ns() - started) / 1e9
            manifest = Manifest(name=name, created_ns=started, source=os.path.abspath(source),
                                kind=plan.kind, size=plan.size, chunk_size=store.chunk_size,
                                table=table_doc(plan.table) if plan.table else None,
                                areas=plan.areas, stats=result.as_dict())
            lease.check()
            lvm.check()
            if guard is not None:
                guard.check(store.drive_now)
            result.drive = store.drive
            if not store.objects.put_once(manifest_object(name), manifest.to_json()):
                raise ImageExists(f"an image named {name!r} appeared while this one was made",
                                  "its chunks are stored; run again with another --name")
    return result


def _budget(reader: FileReader, areas: list[Area], store: ChunkStore, level: int,
            used: int, progress: Progress) -> Budget | None:
    """The space check of a local store (its reserve made first, never used by a create):
    refused now when sampled chunks say the image cannot fit (sampling only when the
    used bytes alone would not fit)."""
    keep_reserve(store.objects)
    free = free_bytes(store.objects)
    if free is None:
        return None
    budget = Budget(store, free, used)
    if used + MARGIN > free:
        progress.phase("estimating")
        budget.check_before(sample_need(reader, areas, store, level))
    return budget


def _give_up(store: ChunkStore, lease: Lease, budget: Budget | None,
             err: NoSpace | StoreFullError) -> NoReturn:
    """Stop a create that does not fit: remove the packs it wrote when no other create
    runs (none can reuse them then), and say what would free space."""
    others = [k for k in records(store.objects, CREATE) if k != lease.key]
    stored = store.building_bytes
    if not others:
        store.drop_session()
    if budget is not None:
        need = err.need if isinstance(err, NoSpace) else max(stored, budget.total)
        raise budget.refuse(need, stored, removed=not others) from err
    if others:
        raise err
    raise StoreFullError(err.message, "free some space or use a larger drive; images already "
                         "listed are unharmed; what this run stored was removed") from err


def _run(reader: FileReader, areas: list[Area], store: ChunkStore, level: int,
         result: CreateResult, progress: Progress, parent: Manifest | None,
         budget: Budget | None = None) -> None:
    """The pipeline: workers read, hash and compress; this thread stores, in order."""
    window = WORKERS * 3
    pending: deque[tuple[Area, int, Future[Work]]] = deque()
    taken: dict[int, list[Extent]] = {id(a): [] for a in areas}
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="twofold-chunk") as pool:
        try:
            for area, cell, pieces, before in _chunks(areas, store.chunk_size, parent):
                pending.append((area, cell, pool.submit(
                    _chunk_work, reader, area.start, pieces, store, level, before)))
                if len(pending) >= window:
                    _take(pending.popleft(), store, result, progress, taken, budget)
            while pending:
                _take(pending.popleft(), store, result, progress, taken, budget)
        finally:
            for _a, _c, fut in pending:
                fut.cancel()
    for area in areas:  # the extents as read: cells taken as before keep their old pieces
        area.extents = list(merge_extents(taken[id(area)]))


def _take(item: tuple[Area, int, Future[Work]], store: ChunkStore, result: CreateResult,
          progress: Progress, taken: dict[int, list[Extent]], budget: Budget | None) -> None:
    area, cell, fut = item
    cid, stored, pieces = fut.result()
    length = sum(n for _, n in pieces)
    taken[id(area)].extend(pieces)
    area.chunks.append(ChunkRef(cell, length, cid))
    if cid is None:
        result.zero_chunks += 1
    elif stored is not None and store.add(cid, stored, length):
        result.new_chunks += 1
    else:
        result.reused_chunks += 1
    progress.advance(nbytes=length)
    if budget is not None:
        budget.advance(length, store.building_bytes)


def _check_live_planned(areas: list[Area], live: dict[int | None, LiveVolume],
                        source: str) -> None:
    """ImageRefused when a mounted read-write volume is not an area taken at file level
    (it would be read block by block while it changes)."""
    if not live or any(a.role == "volume" and a.files is not None for a in areas):
        return
    planned = {a.number for a in areas if a.files is not None}
    for number, vol in live.items():
        if number not in planned:
            raise ImageRefused(f"cannot image {source}: {vol.device} is mounted read-write at "
                               f"{vol.mount.point} and is not a partition of its table",
                               "unmount it, or image the system from rescue media")


def _take_files(areas: list[Area], live: dict[int | None, LiveVolume], store: ChunkStore,
                level: int, result: CreateResult, progress: Progress,
                objects: ObjectStore, parent: Manifest | None) -> None:
    """Image the areas planned at file level from their mounted trees (the store's own
    folder left out; files unchanged since the parent image not read), and note how
    every area was taken."""
    skip: set[tuple[int, int]] = set()
    local = local_of(objects)
    if local is not None:
        with suppress(OSError):
            st = os.stat(local.root)
            skip.add((st.st_dev, st.st_ino))
    for area in areas:
        if area.role == "disk":
            continue
        if area.files is None:
            result.taken.append((area.label, "blocks"))
            continue
        vol = live[area.number] if area.role == "partition" else next(iter(live.values()))
        progress.phase(f"files of {area.label} ({vol.mount.point})")
        old = next((a.files for a in (parent.areas if parent else [])
                    if a.role == area.role and a.number == area.number), None)
        if old and old["params"].get("uuid") != vol.params.get("uuid"):
            old = None  # another file system: its inode numbers mean nothing here
        before = partial(previous, store, old,
                         f"{area.label} of image {parent.name if parent else ''}")
        if vol.params["type"] in SNAPSHOT:
            root = local.root if local is not None else None
            with btrfs_snapshots(vol.device, vol.mount.device, vol.params, root) as view:
                result.cleaned.extend(f"{vol.device}: {p}" for p in view.removed)
                progress.phase(f"files of {area.label} (snapshots of {vol.mount.point})")
                got = image_files(view.root, view.params, store, level, progress, FILE_READERS,
                                  view.skip, before, view.graft)
            how = f"snapshot ({len(view.graft) + 1} btrfs subvolumes), read at file level"
        else:
            got = image_files(vol.mount.point, vol.params, store, level, progress, FILE_READERS,
                              skip, before)
            how = f"file level from {vol.mount.point}"
        area.files, area.fs = got.doc, str(vol.params["type"])
        result.used_bytes += got.file_bytes
        result.new_chunks += got.new_chunks
        result.reused_chunks += got.reused_chunks
        result.zero_chunks += got.zero_chunks
        for issue in got.issues:
            result.issues.append(issue)
            progress.issue(issue)
        result.taken.append((area.label, how))


def _numbers(areas: list[Area]) -> list[int | None]:
    """The key of each area result.taken lists (its number; None for a whole volume)."""
    return [a.number if a.role == "partition" else None for a in areas if a.role != "disk"]


def _stamp(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(ns // 1_000_000_000))
