"""An image's manifest: the disk's layout, and per area the used extents and the chunk ids
of each chunk-size cell (docs/FORMAT.md, "Images"); JSON in, JSON out, no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from twofold.core.errors import TwofoldError

FORMAT = "twofold-image"
VERSION = 1
IMAGES_DIR = "images/"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")

Extent = tuple[int, int]


class ManifestError(TwofoldError):
    """A manifest is damaged, of an unknown version, or names something impossible."""


def check_image_name(name: str) -> str:
    """`name` when it can name an image (letters, digits, . _ + -); ManifestError otherwise."""
    if not _NAME.fullmatch(name) or name.endswith(".json"):
        raise ManifestError(f"bad image name {name!r}",
                            "use letters, digits, '.', '_', '+' or '-' (up to 128)")
    return name


def manifest_object(name: str) -> str:
    """The object name of an image's manifest."""
    return f"{IMAGES_DIR}{check_image_name(name)}.json"


@dataclass
class ChunkRef:
    """One cell's chunk: the cell number, its plain length, its id (None: all zero)."""

    cell: int
    length: int
    id: bytes | None


@dataclass
class Area:
    """A stretch of the disk imaged as one: the table and gaps, a partition, or a volume.

    `extents` are (offset, length) relative to `start`, sorted and disjoint; the bytes of
    extents inside cell k = [k * chunk_size, (k + 1) * chunk_size), concatenated in order,
    form the chunk of cell k.
    """

    role: str  # "disk" (table and gaps), "partition", or "volume" (an unpartitioned source)
    start: int
    size: int
    extents: list[Extent]
    chunks: list[ChunkRef] = field(default_factory=list)
    fs: str | None = None  # file system whose bitmap gave the extents; None: read whole
    number: int | None = None  # the partition's number (1 = first)
    type: str = ""
    name: str = ""
    uuid: str | None = None

    @property
    def used_bytes(self) -> int:
        """Bytes covered by the extents."""
        return sum(n for _, n in self.extents)

    @property
    def label(self) -> str:
        """How messages name this area."""
        if self.role == "partition":
            return f"partition {self.number}" + (f" ({self.fs})" if self.fs else "")
        return "partition table and gaps" if self.role == "disk" else "volume"


@dataclass
class Manifest:
    """A complete image."""

    name: str
    created_ns: int
    source: str
    kind: str  # "disk" or "partition"
    size: int  # bytes of the source
    chunk_size: int
    table: dict[str, Any] | None
    areas: list[Area]
    stats: dict[str, Any] = field(default_factory=dict)

    def chunk_ids(self) -> set[bytes]:
        """Every stored chunk the image needs."""
        return {c.id for a in self.areas for c in a.chunks if c.id is not None}

    @property
    def used_bytes(self) -> int:
        """Bytes of data the image holds."""
        return sum(a.used_bytes for a in self.areas)

    def to_json(self) -> bytes:
        """The manifest document."""
        doc = {
            "format": FORMAT, "version": VERSION, "name": self.name,
            "created_ns": self.created_ns, "source": self.source, "kind": self.kind,
            "size": self.size, "chunk_size": self.chunk_size, "hash": "blake3",
            "compression": "zstd", "table": self.table, "stats": self.stats,
            "areas": [_area_doc(a) for a in self.areas],
        }
        return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def _area_doc(a: Area) -> dict[str, Any]:
    return {"role": a.role, "number": a.number, "start": a.start, "size": a.size,
            "type": a.type, "name": a.name, "uuid": a.uuid, "fs": a.fs,
            "used_bytes": a.used_bytes, "extents": [list(e) for e in a.extents],
            "chunks": [[c.cell, c.length, c.id.hex() if c.id else None] for c in a.chunks]}


def parse_manifest(data: bytes, where: str) -> Manifest:
    """The manifest in `data`; ManifestError naming `where` when it cannot be read."""
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise ManifestError(f"{where} is not a twofold image manifest")
        if doc.get("version") != VERSION:
            raise ManifestError(f"{where} has manifest version {doc.get('version')}",
                                "a newer twofold may read it")
        areas = [Area(role=a["role"], start=a["start"], size=a["size"],
                      extents=[(int(o), int(n)) for o, n in a["extents"]],
                      chunks=[ChunkRef(c[0], c[1], bytes.fromhex(c[2]) if c[2] else None)
                              for c in a["chunks"]],
                      fs=a.get("fs"), number=a.get("number"), type=a.get("type", ""),
                      name=a.get("name", ""), uuid=a.get("uuid"))
                 for a in doc["areas"]]
        return Manifest(name=doc["name"], created_ns=doc["created_ns"], source=doc["source"],
                        kind=doc["kind"], size=doc["size"], chunk_size=doc["chunk_size"],
                        table=doc.get("table"), areas=areas, stats=doc.get("stats", {}))
    except ManifestError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise ManifestError(f"{where} is damaged ({type(err).__name__}: {err})") from None


def cell_pieces(extents: list[Extent], chunk_size: int) -> Iterator[tuple[int, list[Extent]]]:
    """(cell, pieces) for every cell holding used bytes: the parts of `extents` inside
    the cell, in order; the chunk of the cell is these pieces' bytes concatenated."""
    cell = -1
    pieces: list[Extent] = []
    for offset, length in extents:
        pos, end = offset, offset + length
        while pos < end:
            here = pos // chunk_size
            stop = min(end, (here + 1) * chunk_size)
            if here != cell:
                if pieces:
                    yield cell, pieces
                cell, pieces = here, []
            pieces.append((pos, stop - pos))
            pos = stop
    if pieces:
        yield cell, pieces


def chunk_spans(area: Area, chunk_size: int) -> Iterator[tuple[ChunkRef, list[Extent]]]:
    """Each chunk of an area with the pieces (relative to the area) it fills."""
    cells = cell_pieces(area.extents, chunk_size)
    for ref in area.chunks:
        cell, pieces = next(cells, (-1, []))
        if cell != ref.cell or sum(n for _, n in pieces) != ref.length:
            raise ManifestError(f"the chunk list of {area.label} does not match its extents")
        yield ref, pieces
