"""`list`, `delete` and `prune` of images; deleting frees the chunks no image needs.
A damaged manifest is named and skipped; its image can be deleted; the chunks it still
shows are kept."""

from __future__ import annotations

from dataclasses import dataclass, field

from twofold.blobs.objects import StoreFullError
from twofold.chunks.chunkstore import ChunkStore
from twofold.core.clock import Clock
from twofold.core.errors import UsageError
from twofold.core.progress import Progress
from twofold.image.drillrecord import DRILLS_DIR, last_drills
from twofold.image.errors import ImageNotFound
from twofold.image.manifest import Manifest, manifest_object
from twofold.image.repo import Target, exclusive, image_names, open_store, read_manifests
from twofold.image.space import free_bytes, freeable, freed_by, keep_reserve, release_reserve


@dataclass(frozen=True)
class PartInfo:
    """A partition (or the one volume) of an image: number, file system, size, name."""

    number: int | None
    fs: str | None  # None: not a file system twofold reads (imaged whole)
    size: int
    used_bytes: int
    name: str  # the GPT partition name, "" for MBR and volumes
    label: str | None = None  # the file system's label
    taken: str = "blocks"  # or "files": imaged at file level from its mounted tree


@dataclass(frozen=True)
class ImageInfo:
    """One entry of `image list`."""

    name: str
    created_ns: int
    kind: str
    source: str
    size: int
    used_bytes: int
    stored_new_bytes: int
    partitions: int
    table: str | None  # "gpt", "mbr", or None for an image of one volume
    volumes: list[PartInfo] = field(default_factory=list)
    frees_bytes: int = 0  # about what deleting this image alone frees
    last_drill: str = ""  # "passed, 2026-12-04 16:40 UTC" (image drill), "" if never
    host: str = ""  # the computer that took the image; "" when its manifest has none

    @classmethod
    def of(cls, m: Manifest, frees: int = 0, last_drill: str = "") -> ImageInfo:
        """The summary of a manifest."""
        return cls(m.name, m.created_ns, m.kind, m.source, m.size, m.used_bytes,
                   int(m.stats.get("stored_new_bytes", 0)),
                   sum(1 for a in m.areas if a.role == "partition"),
                   str(m.table.get("kind")) if m.table else None,
                   [PartInfo(a.number, a.fs, a.size, a.used_bytes, a.name,
                             a.fs_label or (a.files or {}).get("params", {}).get("label")
                             or None, a.taken)
                    for a in m.areas if a.role in ("partition", "volume")], frees, last_drill,
                   m.host)


@dataclass
class DeleteResult:
    """What delete or prune removed."""

    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    packs_changed: int = 0
    bytes_freed: int = 0
    damaged: dict[str, str] = field(default_factory=dict)  # manifests skipped as damaged


@dataclass
class StoreListing:
    """The images of a store, oldest first, and the damaged manifests skipped."""

    images: list[ImageInfo]
    damaged: dict[str, str]


def list_store(target: Target) -> StoreListing:
    """The complete images in the store, and the manifests found damaged."""
    store = open_store(target)
    found = read_manifests(store.objects)
    frees = freeable(store, found.good)
    drills = last_drills(store.objects)
    return StoreListing([ImageInfo.of(m, frees.get(m.name, 0),
                                      drills[m.name].summary() if m.name in drills else "")
                         for m in found.good], found.damaged)


def list_images(target: Target) -> list[ImageInfo]:
    """The complete (readable) images in the store, oldest first."""
    return list_store(target).images


def _drop(target: Target, names: list[str], progress: Progress, clock: Clock,
          result: DeleteResult) -> DeleteResult:
    """Delete the manifests, then free the chunks. On a full drive: the store is opened
    without writing, the reserve file goes first so the lock can be written, and
    collect() deletes before it writes; the reserve is made again at the end."""
    store = open_store(target)
    release_reserve(store.objects)
    try:
        _drop_locked(store, names, progress, clock, result)
    except StoreFullError as err:
        if result.deleted:
            raise
        raise StoreFullError(  # a store of an older twofold has no reserve to give up
            f"the drive of {store.objects.describe()} is too full even to lock the store; "
            "nothing was deleted", "delete any file of a few MB on that drive, then run "
            "this again: from then on the store keeps room for it") from err
    finally:
        keep_reserve(store.objects)
    return result


def _drop_locked(store: ChunkStore, names: list[str], progress: Progress, clock: Clock,
                 result: DeleteResult) -> None:
    with exclusive(store.objects, clock) as lease:
        present = set(image_names(store.objects))
        for name in names:  # ImageNotFound before anything is removed (a damaged one goes)
            if name not in present:
                known = ", ".join(sorted(present)) or "none"
                raise ImageNotFound(f"no image {name!r} in {store.objects.describe()}",
                                    f"images there: {known}")
        progress.phase("deleting", total_files=len(names))
        for name in names:
            store.objects.delete(manifest_object(name))
            for o in store.objects.list(f"{DRILLS_DIR}{name}/"):  # its drill records
                store.objects.delete(o.name)
            result.deleted.append(name)
            progress.advance(files=1)
        progress.phase("freeing chunks")
        store.objects.discard_partial()  # no writer runs: what a killed one left
        lease.check()
        found = read_manifests(store.objects)
        referenced = set(found.salvaged_ids)  # what a damaged manifest shows stays
        for m in found.good:
            referenced |= m.chunk_ids()
        result.packs_changed, result.bytes_freed = store.collect(
            referenced, free_bytes(store.objects))
        result.kept = [m.name for m in found.good]
        result.damaged = found.damaged


def delete(target: Target, image: str, progress: Progress, clock: Clock) -> DeleteResult:
    """Remove one image and free the chunks only it needed."""
    return _drop(target, [image], progress, clock, DeleteResult())


def prune(target: Target, keep: int, progress: Progress, clock: Clock,
          dry_run: bool = False) -> DeleteResult:
    """Keep the newest `keep` images, delete the others and free every chunk no image
    needs (also what a killed create left)."""
    if keep < 1:
        raise UsageError("--keep must be at least 1", "delete the last image by name instead")
    store = open_store(target)
    found = read_manifests(store.objects)  # damaged ones neither count nor go
    manifests = found.good
    doomed = [m.name for m in manifests[:-keep]]
    if dry_run:
        return DeleteResult(deleted=doomed, kept=[m.name for m in manifests[-keep:]],
                            bytes_freed=freed_by(store, manifests[:-keep], manifests[-keep:]),
                            damaged=found.damaged)
    return _drop(target, doomed, progress, clock, DeleteResult())  # frees leftovers too
