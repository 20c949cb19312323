"""The small JSON objects beside the packs: index files (`index/`), bad-chunk lists
(`bad/`) and the store's marker (`store.json`), built sealed and read checked, with every
pack name they give validated before it is used as an object name. No I/O."""

from __future__ import annotations

import json
import re
from typing import Any

import blake3

from twofold.blobs.objects import StoreError
from twofold.chunks.packs import PackEntry
from twofold.chunks.sealed import SealBroken, is_sealed, seal, unseal
from twofold.fsinfo.volume import DriveId

INDEX_DIR = "index/"
INDEX_VERSION = 2
BAD_DIR = "bad/"
BAD_VERSION = 1
STORE_FILE = "store.json"
STORE_FORMAT = "twofold-image-store"
STORE_VERSION = 2
OLD_VERSION = 1
ENCRYPTED_VERSION = 3
"""index files and store.json before they carried a checksum; read, never written"""

PACK_NAME = re.compile(r"(?:vol-[0-9]{4}/)?packs/([0-9a-f]{2})/\1[0-9a-f]{62}\.pack")
_OBJECT = re.compile(r"(index|bad)/([0-9a-f]{64})\.json")


class IndexDamaged(StoreError):
    """An index file or bad-chunk list is damaged or names something impossible."""


class MarkerDamaged(StoreError):
    """store.json is there but damaged (`twofold image repair` makes it again)."""


def is_pack_name(name: str) -> bool:
    """True when `name` is a pack's object name (packs/<h2>/<h>.pack, maybe in vol-NNNN/)."""
    return PACK_NAME.fullmatch(name) is not None


def content_name(folder: str, data: bytes) -> str:
    """The name of an index file or bad list: its BLAKE3 under `folder`."""
    return f"{folder}{blake3.blake3(data).hexdigest()}.json"


def _checked(name: str, data: bytes) -> dict[str, Any]:
    """The document of an index file or bad list: its name is its hash, and (version 2
    on) it is sealed; IndexDamaged otherwise."""
    found = _OBJECT.fullmatch(name)
    if found is None or blake3.blake3(data).hexdigest() != found.group(2):
        raise IndexDamaged(f"{name} does not match its name (damaged or not ours)")
    try:
        doc = unseal(data) if is_sealed(data) else json.loads(data)
    except (SealBroken, ValueError, UnicodeDecodeError) as err:
        raise IndexDamaged(f"{name} is damaged ({err})") from None
    if not isinstance(doc, dict):
        raise IndexDamaged(f"{name} is not an object")
    return doc


def index_doc(packs: dict[str, list[PackEntry]]) -> bytes:
    """An index file's bytes for `packs`."""
    return seal({"version": INDEX_VERSION, "packs": {
        p: [[e.chunk_id.hex(), e.offset, e.length, e.plain_length] for e in entries]
        for p, entries in sorted(packs.items())}})


def _num(value: object, limit: int) -> int:
    if type(value) is not int or not 0 <= value < limit:
        raise ValueError(f"{value!r} is out of range")
    return value


def parse_index_file(name: str, data: bytes) -> dict[str, list[PackEntry]]:
    """pack name -> entries of an index file; IndexDamaged when it is damaged, of an
    unknown version, or names a pack or entry that cannot be."""
    doc = _checked(name, data)
    version = doc.get("version")
    if version not in (OLD_VERSION, INDEX_VERSION) or \
            (version == INDEX_VERSION) != is_sealed(data):
        raise IndexDamaged(f"{name} has index version {version!r}")
    try:
        out: dict[str, list[PackEntry]] = {}
        for pack, rows in doc["packs"].items():
            if not is_pack_name(pack):
                raise ValueError(f"bad pack name {pack!r}")
            out[pack] = [PackEntry(bytes.fromhex(r[0]) if len(r[0]) == 64 else b"",
                                   _num(r[1], 1 << 40), _num(r[2], 1 << 32),
                                   _num(r[3], 1 << 32)) for r in rows]
            if any(len(e.chunk_id) != 32 for e in out[pack]):
                raise ValueError("a chunk id of the wrong length")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise IndexDamaged(f"{name} is damaged ({err})") from None
    return out


def bad_doc(pairs: set[tuple[bytes, str]], found_ns: int) -> bytes:
    """A bad-chunk list's bytes: which copy (chunk id, pack) failed its check."""
    return seal({"version": BAD_VERSION, "found_ns": found_ns,
                 "chunks": sorted([cid.hex(), pack] for cid, pack in pairs)})


def parse_bad_file(name: str, data: bytes) -> set[tuple[bytes, str]]:
    """The (chunk id, pack) pairs of a bad-chunk list; IndexDamaged when damaged."""
    doc = _checked(name, data)
    if doc.get("version") != BAD_VERSION or not is_sealed(data):
        raise IndexDamaged(f"{name} has bad-list version {doc.get('version')!r}")
    try:
        out = set()
        for cid, pack in doc["chunks"]:
            if len(cid) != 64 or not is_pack_name(pack):
                raise ValueError(f"bad entry {cid!r} {pack!r}")
            out.add((bytes.fromhex(cid), str(pack)))
    except (ValueError, KeyError, TypeError) as err:
        raise IndexDamaged(f"{name} is damaged ({err})") from None
    return out


def marker_doc(chunk_size: int, drive: DriveId | None = None,
               encrypted: bool = False) -> bytes:
    """store.json's bytes: the one place its fields are set (more may be added); `drive`:
    the drive a store in a folder is made on (fsinfo/volume.py); `encrypted`: a store
    sealed by vault/ (version 3, so that a twofold without encryption refuses it)."""
    doc: dict[str, Any] = {"format": STORE_FORMAT, "version": STORE_VERSION,
                           "chunk_size": chunk_size, "hash": "blake3", "compression": "zstd"}
    if encrypted:
        doc.update(version=ENCRYPTED_VERSION, hash="blake3-keyed",
                   encryption={"cipher": "aes-256-gcm", "kdf": "argon2id", "keys": "keys/"})
    if drive is not None:
        doc["drive"] = drive.to_json()
    return seal(doc)


def parse_marker(data: bytes, where: str) -> dict[str, Any]:
    """store.json's fields (either version), checked; StoreError when damaged or of a
    format or version this twofold does not read."""
    hint = "twofold image repair makes it again from the images"
    try:
        doc = unseal(data) if is_sealed(data) else json.loads(data)
    except (SealBroken, ValueError, UnicodeDecodeError) as err:
        raise MarkerDamaged(f"{STORE_FILE} in {where} is damaged ({err})", hint) from None
    if not isinstance(doc, dict):
        raise MarkerDamaged(f"{STORE_FILE} in {where} is damaged (not an object)", hint)
    if doc.get("format") != STORE_FORMAT or \
            doc.get("version") not in (OLD_VERSION, STORE_VERSION, ENCRYPTED_VERSION):
        raise StoreError(f"{where} holds an image store of an unknown format "
                         f"{doc.get('format')} {doc.get('version')}",
                         "a newer twofold may read it")
    if (doc.get("version") != OLD_VERSION) != is_sealed(data) or \
            (doc.get("version") == ENCRYPTED_VERSION) != isinstance(doc.get("encryption"), dict):
        raise MarkerDamaged(f"{STORE_FILE} in {where} is damaged (version and checksum "
                            "disagree)", hint)
    return doc
