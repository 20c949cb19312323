"""`image verify --heal`: after a verify, good copies of the damaged or missing chunks are
taken from another store (checked against their ids) or read again from the source disk
(kept only when they hash to the id the image names) and stored as new packs; a damaged
manifest is replaced by the same image's sound manifest from the other store."""

from __future__ import annotations

from dataclasses import dataclass, field

from twofold.blobs.objects import StoreError
from twofold.chunks.chunkstore import ChunkStore
from twofold.core.clock import Clock
from twofold.core.progress import Progress
from twofold.fsinfo.blockio import FileReader, PieceReadError, read_pieces
from twofold.image.create import LEVELS
from twofold.image.errors import ImageRefused
from twofold.image.manifest import Extent, Manifest, ManifestError, chunk_spans, manifest_object
from twofold.image.repo import (
    Target,
    creating,
    load_manifest,
    open_objects,
    open_store,
    read_manifests,
)
from twofold.image.verify import VerifyResult, verify


@dataclass
class HealResult:
    """What verify found and what healing mended."""

    found: VerifyResult
    healed: int = 0  # chunks stored again and read back sound
    unhealed: int = 0  # damaged or missing chunks no good copy was found for
    manifests_healed: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        """True when nothing damaged remains (a damaged index file or pack index is
        repair's to mend, not heal's)."""
        return not self.unhealed and not self.found.damaged_files and \
            set(self.found.damaged_manifests) <= set(self.manifests_healed)


Places = dict[bytes, tuple[int, list[Extent]]]  # chunk id -> area start, pieces


def _places(manifests: list[Manifest], wanted: set[bytes]) -> Places:
    out: Places = {}
    for m in manifests:
        for area in m.areas:
            for ref, pieces in chunk_spans(area, m.chunk_size):
                if ref.id in wanted and ref.id not in out:
                    out[ref.id] = (area.start, pieces)
    return out


def _from_store(other: ChunkStore, cid: bytes) -> bytes | None:
    if other.location(cid) is None:
        return None
    try:
        return other.load(cid)  # checked against its id
    except StoreError:
        return None


def _from_source(store: ChunkStore, reader: FileReader,
                 place: tuple[int, list[Extent]] | None, cid: bytes) -> bytes | None:
    if place is None:
        return None
    start, pieces = place
    try:
        data = read_pieces(reader, start, pieces)  # this thread's buffer: copied if kept
    except PieceReadError:
        return None
    return bytes(data) if store.id_of(data) == cid else None  # the disk has changed there


def heal(target: Target, image: str | None, progress: Progress, clock: Clock,
         other: Target | None = None, source: str | None = None) -> HealResult:
    """Verify, then mend what is damaged from `other` (a store) or `source` (the disk
    that was imaged)."""
    if (other is None) == (source is None):
        raise ImageRefused("heal needs exactly one of another store or the source disk")
    reader = _open_source(source) if source is not None else None
    try:
        return _heal(target, image, progress, clock, other, reader)
    finally:
        if reader is not None:
            reader.close()


def _open_source(source: str) -> FileReader:
    try:
        return FileReader(source)
    except OSError as err:
        raise ImageRefused(f"cannot read the source {source}: {err.strerror or err}",
                           "give the disk or partition (or image file) that was imaged"
                           ) from None


def _heal(target: Target, image: str | None, progress: Progress, clock: Clock,
          other: Target | None, reader: FileReader | None) -> HealResult:
    result = HealResult(verify(target, image, progress, clock))
    if result.found.sound:
        return result
    objects = open_objects(target)
    donor = open_store(other) if other is not None else None
    mended: dict[str, bytes] = {}
    if donor is not None:
        for name in result.found.damaged_manifests:
            try:
                load_manifest(donor.objects, name)
                mended[name] = donor.objects.get(manifest_object(name))
            except (ManifestError, StoreError):
                continue
    with creating(objects, clock) as lease:
        store = open_store(objects, write=True)
        manifests = [load_manifest(objects, image)] if image and image not in mended \
            else read_manifests(objects).good
        wanted = set(result.found.bad_ids)
        if donor is not None:
            for name in mended:
                need = load_manifest(donor.objects, name).chunk_ids()
                wanted |= {c for c in need if store.location(c) is None}
        progress.phase("healing", total_files=len(wanted))
        places = _places(manifests, wanted)
        for cid in sorted(wanted):
            data = _from_store(donor, cid) if donor is not None else \
                _from_source(store, reader, places.get(cid), cid) if reader else None
            progress.advance(files=1)
            if data is not None and not store.has(cid):
                store.add(cid, store.stored_form(cid, data, LEVELS["balanced"]), len(data))
        store.commit_index()
        lease.check()
        for name, data in mended.items():
            objects.delete(manifest_object(name))
            objects.put_once(manifest_object(name), data)
            result.manifests_healed.append(name)
    fresh = open_store(objects)
    for cid in wanted:
        try:
            fresh.load(cid)
            result.healed += 1
        except StoreError:
            result.unhealed += 1
    return result
