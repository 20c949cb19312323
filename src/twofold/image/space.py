"""Will an image fit: the free space of a local store's drive, the bytes a create is
expected to store (sampled before the run, projected from what it stored during it), and
what deleting each image would free (docs/DESIGN.md, "Space before writing")."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

from twofold.blobs.objects import LocalObjects, ObjectStore
from twofold.chunks.chunkstore import PACK_SIZE, ChunkStore
from twofold.chunks.packs import compress
from twofold.core.text import human_bytes
from twofold.fsinfo.blockio import FileReader, PieceReadError, read_pieces
from twofold.image.errors import ImageRefused
from twofold.image.manifest import Area, Extent, Manifest, cell_pieces
from twofold.image.repo import all_manifests
from twofold.vault.objects import plain_objects

MARGIN = 4 << 20
"""Kept free beyond the estimate: the index file, the manifest, lock records, and the
file system's rounding of every pack to whole clusters."""
SAMPLES = 24
"""Chunks read and compressed before the run to guess the ratio."""
INDEX_ROW = 128
"""Bytes an index file spends per new chunk (a JSON row)."""


class NoSpace(ImageRefused):
    """The image will not fit on the store's drive."""

    need = 0
    """The bytes the image was expected to need."""


def free_bytes(objects: ObjectStore) -> int | None:
    """Bytes a writer may still use on a local store's drive; None for a network store,
    whose free space the protocol does not tell."""
    objects = plain_objects(objects)
    if not isinstance(objects, LocalObjects):
        return None
    path = objects.root
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    if st.f_blocks == 0:  # the driver does not tell (fusefat)
        return None
    return st.f_bavail * st.f_frsize


def reserve_size(objects: LocalObjects) -> int:
    """The reserve a local store keeps: a fiftieth of its drive, at least 1 MiB (locks,
    an index), at most a pack and 1 MiB (any one pack can be rewritten)."""
    try:
        st = os.statvfs(objects.root)
    except OSError:
        return 1 << 20
    return min(max(st.f_blocks * st.f_frsize // 50, 1 << 20), PACK_SIZE + (1 << 20))


def keep_reserve(objects: ObjectStore) -> None:
    """Make a local store's reserve file where there is room (blobs/objects.py, RESERVE)."""
    objects = plain_objects(objects)
    if isinstance(objects, LocalObjects):
        objects.keep_reserve(reserve_size(objects))


def release_reserve(objects: ObjectStore) -> None:
    """Free a local store's reserve file for a delete or prune on a full drive."""
    objects = plain_objects(objects)
    if isinstance(objects, LocalObjects):
        objects.release_reserve()


def freeable(store: ChunkStore, manifests: list[Manifest]) -> dict[str, int]:
    """Image name -> the stored bytes of the chunks no other image needs: about what
    deleting it alone frees (packs are rewritten to drop them)."""
    ids = {m.name: m.chunk_ids() for m in manifests}
    counts: Counter[bytes] = Counter()
    for chunk_set in ids.values():
        counts.update(chunk_set)
    out: dict[str, int] = {}
    for name, chunk_set in ids.items():
        total = 0
        for cid in chunk_set:
            loc = store.location(cid)
            if counts[cid] == 1 and loc is not None:
                total += loc.length
        out[name] = total
    return out


def freed_by(store: ChunkStore, doomed: list[Manifest], kept: list[Manifest]) -> int:
    """The stored bytes of the chunks `doomed` images need and no `kept` image does:
    about what deleting them together frees."""
    keep: set[bytes] = set()
    for m in kept:
        keep |= m.chunk_ids()
    gone: set[bytes] = set()
    for m in doomed:
        gone |= m.chunk_ids()
    return sum(loc.length for cid in gone - keep if (loc := store.location(cid)) is not None)


def _sample_cells(areas: list[Area], chunk_size: int) -> list[tuple[int, list[Extent]]]:
    """SAMPLES cells spread evenly over the used data: (area start, pieces)."""
    cells = [(a.start, pieces) for a in areas for _c, pieces in cell_pieces(a.extents,
                                                                            chunk_size)]
    if len(cells) <= SAMPLES:
        return cells
    step = len(cells) / SAMPLES
    return [cells[int(i * step)] for i in range(SAMPLES)]


def sample_need(reader: FileReader, areas: list[Area], store: ChunkStore,
                level: int) -> int:
    """The bytes the run is expected to store: the used bytes times what sampled chunks
    need (nothing when all-zero or already stored, else their compressed size). A fast
    zstd level stands in for slow ones: higher levels only store less."""
    used = sum(a.used_bytes for a in areas)
    plain = stored = 0
    for start, pieces in _sample_cells(areas, store.chunk_size):
        try:
            data = read_pieces(reader, start, pieces)
        except PieceReadError:
            continue  # the run itself says where the source cannot be read
        plain += len(data)
        cid = store.id_of(data)
        if not store.is_zero(cid, data) and not store.has(cid):
            stored += len(compress(data, min(level, 3)))
    if not plain:
        return 0
    return int(used * stored / plain)


@dataclass
class Budget:
    """The space a create may use, checked before the run and as it goes."""

    store: ChunkStore
    free: int  # at the start
    total: int  # used bytes of the source
    done: int = 0
    _next: int = 0

    def refuse(self, need: int, stored: int = 0, removed: bool = True) -> NoSpace:
        """The error naming both figures and what would free space; `stored`: bytes the
        run stored before it stopped, `removed` again or kept for a later run."""
        where = self.store.objects.describe()
        fate = "removed again" if removed else "kept: another create runs; `image prune` " \
            "frees them if no image comes to need them"
        so_far = f" ({human_bytes(stored)} stored so far, {fate})" if stored else ""
        hint = "use a larger drive, or free space on it"
        deletable = freeable(self.store, all_manifests(self.store.objects))
        if deletable:
            sizes = ", ".join(f"{n} {human_bytes(b)}" for n, b in deletable.items())
            hint = ("free space with `twofold image prune TARGET --keep N` or `twofold image "
                    f"delete TARGET NAME`; deleting one image alone frees about: {sizes}")
        err = NoSpace(f"the image will not fit on the drive of {where}: it needs about "
                      f"{human_bytes(need)}, the drive has {human_bytes(self.free)} free"
                      + so_far, hint)
        err.need = need
        return err

    def check_before(self, need: int) -> None:
        """NoSpace when the sampled estimate (plus MARGIN) exceeds the free space."""
        if need + MARGIN + self._rows(need) > self.free:
            raise self.refuse(need + MARGIN)

    @staticmethod
    def _rows(need: int) -> int:
        return (need >> 20) * INDEX_ROW

    def advance(self, nbytes: int, stored: int) -> None:
        """After `nbytes` more source bytes were taken, with `stored` bytes stored by the
        run so far: once a tenth (or 256 MiB) is done, project the rest at the ratio seen
        and raise NoSpace when the projection no longer fits."""
        self.done += nbytes
        if self.done < self._next or self.total <= 0:
            return
        step = max(self.total // 50, 16 << 20)
        self._next = self.done + step
        if self.done < min(self.total // 10, 256 << 20):
            return
        need = stored + int((self.total - self.done) * stored / self.done)
        if need + MARGIN + self._rows(need) > self.free:
            raise self.refuse(need + MARGIN, stored)
