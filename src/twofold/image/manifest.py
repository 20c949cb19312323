"""An image's manifest: the disk's layout, and per area the used extents and the chunk ids
of each chunk-size cell (docs/FORMAT.md, "Images"); sealed JSON in and out (version 2;
version 1, without a checksum, is still read), checked for sense before use; no I/O (a
new manifest asks the kernel for this computer's host name)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from twofold.chunks.sealed import SealBroken, is_sealed, seal, unseal
from twofold.core.errors import TwofoldError

FORMAT = "twofold-image"
VERSION = 2
FILES_VERSION = 3
"""Written when an area was taken at file level (`taken: files`); version 2 otherwise."""
OLD_VERSION = 1
"""Written before manifests carried a checksum; read, never written."""
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
    fs_label: str | None = None  # the file system's own label, when it has one
    files: dict[str, Any] | None = None
    """For an area taken at file level: its file system's parameters and the chunks of
    its records and data (docs/FORMAT.md, "File-level areas"); None: taken as blocks."""

    @property
    def taken(self) -> str:
        """How the area was imaged: "files" or "blocks"."""
        return "blocks" if self.files is None else "files"

    def file_chunks(self) -> list[tuple[int, bytes]]:
        """(length, id) of every chunk a file-level area needs: records first."""
        if self.files is None:
            return []
        return [(n, bytes.fromhex(h)) for n, h in self.files["meta"] + self.files["data"]]

    @property
    def used_bytes(self) -> int:
        """Bytes covered by the extents (the files' bytes for a file-level area)."""
        if self.files is not None:
            return int(self.files.get("file_bytes", 0))
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
    host: str = field(default_factory=socket.gethostname)  # "" when an old one lacks it

    def chunk_ids(self) -> set[bytes]:
        """Every stored chunk the image needs."""
        return {c.id for a in self.areas for c in a.chunks if c.id is not None} | \
            {cid for a in self.areas for _n, cid in a.file_chunks()}

    @property
    def used_bytes(self) -> int:
        """Bytes of data the image holds."""
        return sum(a.used_bytes for a in self.areas)

    def to_json(self) -> bytes:
        """The manifest document, sealed with its checksum."""
        doc = {
            "format": FORMAT,
            "version": FILES_VERSION if any(a.files for a in self.areas) else VERSION,
            "name": self.name,
            "created_ns": self.created_ns, "source": self.source, "kind": self.kind,
            "size": self.size, "chunk_size": self.chunk_size, "hash": "blake3",
            "compression": "zstd", "table": self.table, "stats": self.stats,
            "areas": [_area_doc(a) for a in self.areas],
        }
        if self.host:  # optional: older manifests lack it, older readers skip it
            doc["host"] = self.host
        return seal(doc)


def _area_doc(a: Area) -> dict[str, Any]:
    more = {"taken": "files", "files": a.files} if a.files is not None else {}
    label = {"fs_label": a.fs_label} if a.fs_label else {}  # optional: older readers skip it
    return {**more, "role": a.role, "number": a.number, "start": a.start, "size": a.size,
            "type": a.type, "name": a.name, "uuid": a.uuid, "fs": a.fs, **label,
            "used_bytes": a.used_bytes, "extents": [list(e) for e in a.extents],
            "chunks": [[c.cell, c.length, c.id.hex() if c.id else None] for c in a.chunks]}


def parse_manifest(data: bytes, where: str, name: str | None = None) -> Manifest:
    """The manifest in `data`, checked (its checksum, then that its extents and chunks
    make sense, and that it names image `name` when given); ManifestError naming `where`
    when it is damaged, of an unknown version, or describes something impossible."""
    try:
        if is_sealed(data):
            doc = unseal(data)
            if doc.get("version") not in (VERSION, FILES_VERSION):
                raise ManifestError(f"{where} has manifest version {doc.get('version')}",
                                    "a newer twofold may read it")
        else:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            if doc.get("version") != OLD_VERSION:  # later versions are always sealed
                raise SealBroken(f"version {doc.get('version')!r} without its checksum")
        if doc.get("format") != FORMAT:
            raise ManifestError(f"{where} is not a twofold image manifest")
        areas = [Area(role=a["role"], start=_int(a["start"]), size=_int(a["size"]),
                      extents=[(_int(o), _int(n)) for o, n in a["extents"]],
                      chunks=[ChunkRef(_int(c[0]), _int(c[1]), _chunk_id(c[2]))
                              for c in a["chunks"]],
                      fs=_text(a.get("fs")), number=a.get("number"),
                      type=str(a.get("type", "")), name=str(a.get("name", "")),
                      uuid=_text(a.get("uuid")), fs_label=_text(a.get("fs_label")),
                      files=_files(a))
                 for a in doc["areas"]]
        table = doc.get("table")
        if table is not None and not isinstance(table, dict):
            raise ValueError("table is not an object")
        m = Manifest(name=str(doc["name"]), created_ns=_int(doc["created_ns"]),
                     source=str(doc["source"]), kind=str(doc["kind"]), size=_int(doc["size"]),
                     chunk_size=_int(doc["chunk_size"]), table=table, areas=areas,
                     stats=dict(doc.get("stats") or {}), host=_text(doc.get("host")) or "")
    except ManifestError:
        raise
    except SealBroken as err:
        raise ManifestError(f"{where} is damaged: {err}",
                            "delete it (twofold image delete), or copy the image again "
                            "from another store") from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError,
            RecursionError) as err:
        raise ManifestError(f"{where} is damaged ({type(err).__name__}: {err})") from None
    check_sense(m, where, name)
    return m


def _int(value: object) -> int:
    if type(value) is not int:
        raise ValueError(f"{value!r} is not a whole number")
    return value


def _text(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value


def _files(area: dict[str, Any]) -> dict[str, Any] | None:
    """The `files` of a file-level area, its chunk lists checked; None for blocks."""
    if area.get("taken", "blocks") == "blocks":
        return None
    if area["taken"] != "files" or not isinstance(area.get("files"), dict):
        raise ValueError(f"an area taken as {area['taken']!r}")
    files: dict[str, Any] = area["files"]
    for key in ("meta", "data"):
        for length, cid in files[key]:
            _int(length)
            _chunk_id(cid)
    _int(files["file_bytes"])
    if not isinstance(files.get("params"), dict):
        raise ValueError("a file-level area without its file system's parameters")
    return files


def _chunk_id(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError(f"{value!r} is not a chunk id")
    return bytes.fromhex(value)


def check_sense(m: Manifest, where: str, name: str | None = None) -> None:
    """ManifestError unless `m` describes a possible image: a valid name (`name` when
    given), a valid chunk size, areas inside the source, extents sorted, disjoint and
    inside their area (and no byte in two areas), one chunk per cell holding extents."""
    def bad(what: str) -> ManifestError:
        return ManifestError(f"{where} describes an impossible image: {what}",
                             "do not restore it; delete it and image the disk again")

    check_image_name(m.name)
    if name is not None and m.name != name:
        raise bad(f"it names image {m.name!r}")
    if m.chunk_size & (m.chunk_size - 1) or not 1 << 16 <= m.chunk_size <= 1 << 24:
        raise bad(f"chunk size {m.chunk_size}")
    if m.size <= 0 or m.kind not in ("disk", "partition"):
        raise bad(f"a {m.kind!r} of {m.size} bytes")
    spans: list[Extent] = []
    for area in m.areas:
        if area.role not in ("disk", "partition", "volume") or area.start < 0 or \
                area.size < 0 or area.start + area.size > m.size:
            raise bad(f"{area.label} at {area.start} of {area.size} bytes")
        if area.files is not None and (area.extents or area.chunks or not area.files["meta"]):
            raise bad(f"{area.label} is taken at file level but lists blocks or no records")
        end = 0
        for offset, length in area.extents:
            if offset < end or length <= 0 or offset + length > area.size:
                raise bad(f"extent [{offset},{length}] of {area.label}")
            end = offset + length
            spans.append((area.start + offset, length))
        cells = cell_pieces(area.extents, m.chunk_size)
        for ref in area.chunks:
            cell, pieces = next(cells, (-1, []))
            if ref.cell != cell or ref.length != sum(n for _, n in pieces):
                raise bad(f"chunk of cell {ref.cell} of {area.label} does not match its "
                          "extents")
        if next(cells, None) is not None:
            raise bad(f"cells of {area.label} without a chunk")
    spans.sort()
    for (a, n), (b, _) in pairwise(spans):
        if a + n > b:
            raise bad(f"byte {b} is in two areas")


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
