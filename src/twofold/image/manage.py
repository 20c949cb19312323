"""`list`, `delete` and `prune` of images; deleting frees the chunks no image needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from twofold.core.clock import Clock
from twofold.core.errors import UsageError
from twofold.core.progress import Progress
from twofold.image.drillrecord import DRILLS_DIR, last_drills
from twofold.image.manifest import Manifest, manifest_object
from twofold.image.repo import Target, all_manifests, exclusive, load_manifest, open_store


@dataclass(frozen=True)
class ImageInfo:
    """One line of `image list`."""

    name: str
    created_ns: int
    kind: str
    source: str
    size: int
    used_bytes: int
    stored_new_bytes: int
    partitions: int
    last_drill: str = ""  # "passed, 2026-12-04 16:40 UTC" (image drill), "" if never

    @classmethod
    def of(cls, m: Manifest, last_drill: str = "") -> ImageInfo:
        """The summary of a manifest."""
        return cls(m.name, m.created_ns, m.kind, m.source, m.size, m.used_bytes,
                   int(m.stats.get("stored_new_bytes", 0)),
                   sum(1 for a in m.areas if a.role == "partition"), last_drill)


@dataclass
class DeleteResult:
    """What delete or prune removed."""

    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    packs_changed: int = 0
    bytes_freed: int = 0


def list_images(target: Target) -> list[ImageInfo]:
    """The complete images in the store, oldest first."""
    store = open_store(target)
    drills = last_drills(store.objects)
    return [ImageInfo.of(m, drills[m.name].summary() if m.name in drills else "")
            for m in all_manifests(store.objects)]


def _drop(target: Target, names: list[str], progress: Progress, clock: Clock,
          result: DeleteResult) -> DeleteResult:
    store = open_store(target, write=True)
    with exclusive(store.objects, clock) as lease:
        for name in names:
            load_manifest(store.objects, name)  # ImageNotFound before anything is removed
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
        live = all_manifests(store.objects)
        referenced: set[bytes] = set()
        for m in live:
            referenced |= m.chunk_ids()
        result.packs_changed, result.bytes_freed = store.collect(referenced)
        result.kept = [m.name for m in live]
    return result


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
    manifests = all_manifests(store.objects)
    doomed = [m.name for m in manifests[:-keep]]
    if dry_run:
        return DeleteResult(deleted=doomed, kept=[m.name for m in manifests[-keep:]])
    return _drop(target, doomed, progress, clock, DeleteResult())  # frees leftovers too
