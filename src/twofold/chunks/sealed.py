"""Self-checking JSON documents of the image store (manifests, index files, store.json,
bad-chunk lists): the first key is "checksum", the BLAKE3 of the document's own bytes with
those 64 hex digits read as zeros (docs/FORMAT.md, "Checksums"). No I/O."""

from __future__ import annotations

import json
from typing import Any

import blake3

PREFIX = b'{"checksum":"'
_HEX = slice(len(PREFIX), len(PREFIX) + 64)
_ZERO = b"0" * 64


class SealBroken(ValueError):
    """Bytes that should be a sealed document are not one, or fail their checksum."""


def seal(doc: dict[str, Any]) -> bytes:
    """`doc` as one compact JSON line whose first key is its checksum."""
    body = json.dumps({"checksum": _ZERO.decode(), **doc}, separators=(",", ":")).encode()
    body += b"\n"
    return body[:_HEX.start] + blake3.blake3(body).hexdigest().encode() + body[_HEX.stop:]


def is_sealed(data: bytes) -> bool:
    """True when `data` starts as a sealed document does (it may still be damaged)."""
    return data.startswith(PREFIX)


def unseal(data: bytes) -> dict[str, Any]:
    """The document in sealed `data`, without its checksum; SealBroken when the checksum
    does not match or the bytes are not a JSON object."""
    if not is_sealed(data) or data[_HEX.stop:_HEX.stop + 2] != b'",':
        raise SealBroken("it does not start with its checksum")
    zeroed = data[:_HEX.start] + _ZERO + data[_HEX.stop:]
    if blake3.blake3(zeroed).hexdigest().encode() != data[_HEX]:
        raise SealBroken("its checksum does not match its bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:  # only a forged checksum gets here
        raise SealBroken(f"it is not JSON ({err})") from None
    if not isinstance(doc, dict):
        raise SealBroken("it is not a JSON object")
    doc.pop("checksum", None)
    return doc
