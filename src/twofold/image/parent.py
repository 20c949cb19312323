"""The previous image of the same source, cell by cell: a cell whose used blocks are a
subset of what that image holds there is read as it was then (freed blocks included), so
that a freed block does not make its chunk new."""

from __future__ import annotations

from twofold.blobs.objects import ObjectStore
from twofold.image.manifest import Area, Extent, Manifest, chunk_spans
from twofold.image.repo import Manifests, read_manifests

ParentCells = dict[int, tuple[list[Extent], bytes | None]]
"""cell -> (pieces the previous image holds in it, their chunk id)."""


def find_parent(objects: ObjectStore, source: str, kind: str, size: int
                ) -> tuple[Manifest | None, Manifests]:
    """The newest image of `source` (same kind and size), or None; and the store's
    manifests (the damaged ones named there are skipped)."""
    found = read_manifests(objects)
    same = [m for m in found.good if m.source == source and m.kind == kind and m.size == size]
    return (same[-1] if same else None), found


def parent_cells(parent: Manifest | None, area: Area, chunk_size: int) -> ParentCells:
    """The parent's cells for the area at the same place (same role, start and size)."""
    if parent is None or parent.chunk_size != chunk_size:
        return {}
    for old in parent.areas:
        if (old.role, old.start, old.size, old.number) == \
                (area.role, area.start, area.size, area.number):
            return {ref.cell: (pieces, ref.id) for ref, pieces in chunk_spans(old, chunk_size)}
    return {}


def within(inner: list[Extent], outer: list[Extent]) -> bool:
    """True when every byte of `inner` lies in `outer` (both sorted and disjoint)."""
    j = 0
    for start, length in inner:
        end = start + length
        while j < len(outer) and outer[j][0] + outer[j][1] <= start:
            j += 1
        if j == len(outer) or outer[j][0] > start or outer[j][0] + outer[j][1] < end:
            return False
    return True
