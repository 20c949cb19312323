"""The records of a file-level partition (docs/FORMAT.md, "File-level areas"): one JSON
line per file, folder, link or device, cut into chunks at record boundaries chosen by the
records' own paths, so an unchanged stretch of the tree makes the same chunks again."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from blake3 import blake3

from twofold.chunks.chunkstore import ChunkStore
from twofold.image.manifest import ManifestError

KINDS = {"f": "file", "d": "folder", "l": "symlink", "c": "char device", "b": "block device",
         "p": "fifo", "s": "socket"}
BOUNDARY_MASK = 31  # small files' shared chunks end after a path whose hash has these
# bits clear: about 32 files a chunk
RECORD_MASK = 127  # records are small: about 128 to a chunk


def put_bytes(doc: dict[str, Any], key: str, value: bytes) -> None:
    """`value` under `key` as text when it is UTF-8, else as hex under `key` + "x"."""
    try:
        doc[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        doc[key + "x"] = value.hex()


def get_bytes(doc: dict[str, Any], key: str) -> bytes | None:
    """What put_bytes stored under `key`, or None."""
    if key in doc:
        return str(doc[key]).encode("utf-8")
    if key + "x" in doc:
        return bytes.fromhex(str(doc[key + "x"]))
    return None


def path_mark(path: bytes) -> int:
    """The bits of `path` that say where groups end: a group of small files' data ends
    after a path whose mark has BOUNDARY_MASK's bits clear, a chunk of records where it
    has RECORD_MASK's clear. Decided by the path alone, so a change inside one group
    leaves the others as they were."""
    return int.from_bytes(blake3(path).digest()[:2], "little")


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)  # one: dumps() makes one a call


def groups(records: list[dict[str, Any]], marks: list[int], limit: int,
           mask: int = RECORD_MASK, lines: dict[int, bytes] | None = None) -> Iterator[bytes]:
    """The record stream as pieces of at most about `limit` bytes, each ending after a
    record whose path's mark (path_mark) has `mask`'s bits clear, or at `limit`; `lines`:
    the encoded lines of records taken over from the previous image, by id() (not encoded
    again: the same dict gives the same line)."""
    piece: list[bytes] = []
    size = 0
    encode = _ENCODER.encode
    known = lines or {}
    for rec, mark in zip(records, marks, strict=True):
        line = known.get(id(rec))
        if line is None:
            line = encode(rec).encode()
        piece.append(line)
        size += len(line) + 1
        if size >= limit or not mark & mask:
            piece.append(b"")
            yield b"\n".join(piece)
            piece, size = [], 0
    if piece:
        piece.append(b"")
        yield b"\n".join(piece)


def parse_records(data: bytes, where: str) -> list[dict[str, Any]]:
    """The records in the stream `data`, each checked for its kind and a safe path;
    ManifestError naming `where` otherwise."""
    try:  # one JSON array: far faster than a loads() a line
        recs = json.loads(b"[" + data.rstrip(b"\n").replace(b"\n", b",") + b"]")
    except ValueError:
        recs = None
    if not isinstance(recs, list):
        recs = []
        for line in data.splitlines():  # damaged somewhere: find which record
            try:
                recs.append(json.loads(line))
            except ValueError as err:
                raise ManifestError(f"{where}: record {len(recs) + 1} is damaged ({err})",
                                    "do not restore it; delete it and image the disk again"
                                    ) from None
    for number, rec in enumerate(recs, 1):
        if type(rec) is dict and rec.get("k") in KINDS:
            path = rec.get("p")
            if type(path) is str and (not path or (
                    "/." not in path and "//" not in path and "\0" not in path and
                    path[0] not in "./" and path[-1] != "/")):
                continue  # the usual record: a kind and a path plainly safe (no dot
                # starts a component); anything else is checked in full below
        try:
            if not isinstance(rec, dict) or rec.get("k") not in KINDS:
                raise ValueError("not a record")
            raw = get_bytes(rec, "p")
            if raw is None:
                raise ValueError("no path")
            check_path(raw)
        except (ValueError, TypeError) as err:
            raise ManifestError(f"{where}: record {number} is damaged ({err})",
                                "do not restore it; delete it and image the disk again"
                                ) from None
    return recs


def load_lines(store: ChunkStore, files: dict[str, Any], where: str
               ) -> list[tuple[dict[str, Any], bytes]]:
    """load_records, each record with its line as stored (without its newline)."""
    out: list[tuple[dict[str, Any], bytes]] = []
    for length, hexid in files["meta"]:
        data = store.load(bytes.fromhex(hexid))
        if len(data) != length:
            raise ManifestError(f"{where}: a records chunk has the wrong length")
        recs = parse_records(data, where)
        raw = data.split(b"\n")
        if raw.pop() or len(raw) != len(recs):
            raise ManifestError(f"{where}: a records chunk does not end its lines")
        out.extend(zip(recs, raw, strict=True))
    return out


_UNSAFE = re.compile(rb"(?:^|/)\.{0,2}(?:/|$)|\x00")
"""An empty, `.` or `..` component (a leading, trailing or doubled `/` included), or NUL."""


def check_path(path: bytes) -> list[bytes]:
    """The components of a relative path from a record; ValueError for an absolute path,
    `.`/`..`, an empty component or a NUL byte ("" is the file system's root)."""
    if not path:
        return []
    if _UNSAFE.search(path):
        raise ValueError(f"unsafe path {path!r}")
    return path.split(b"/")


def load_records(store: ChunkStore, files: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The records of a file-level area, read from the store and checked."""
    return [rec for rec, _line in load_lines(store, files, where)]
