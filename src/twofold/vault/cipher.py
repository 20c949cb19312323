"""The sealing of one object or chunk with the store's master key: AES-256-GCM with a
random nonce and associated data naming what is sealed, and keyed BLAKE3 chunk ids
(docs/FORMAT.md, "Encryption"). No I/O. The cryptography package is imported when a
vault is made: a plain store's commands do not pay its import (25 ms with a cold cache)."""

from __future__ import annotations

import hmac
import os

import blake3

from twofold.blobs.objects import StoreError

SEAL_VERSION = 1
"""The first byte of every sealed object or chunk."""
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES
"""Bytes a sealed object has beyond its plain bytes."""
KEY_BYTES = 32
SEAL_INFO = b"twofold seal v1"
ID_INFO = b"twofold chunk id v1"


class SealDamaged(StoreError):
    """Sealed bytes fail their authentication: damaged, forged, or under another key."""


def subkey(master: bytes, info: bytes) -> bytes:
    """A 32-byte key derived from the master key by HKDF-SHA256 (no salt) for `info`."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), KEY_BYTES, None, info).derive(master)


def chunk_ad(cid: bytes) -> bytes:
    """The associated data of a chunk: it opens only under its own id."""
    return b"chunk:" + cid


PACK_INDEX_AD = b"pack index"
"""The associated data of a pack's own index (its chunks are bound to their ids)."""


def object_ad(name: str) -> bytes:
    """The associated data of an object: it opens only under its own name."""
    return b"object:" + name.encode()


class Vault:
    """Seals and opens bytes, and names chunks, under one store's master key."""

    def __init__(self, master: bytes) -> None:
        if len(master) != KEY_BYTES:
            raise ValueError("a master key has 32 bytes")
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(subkey(master, SEAL_INFO))
        self._into = hasattr(AESGCM, "encrypt_into")  # not in older releases
        self._invalid = InvalidTag
        self._id_key = subkey(master, ID_INFO)

    def same_key(self, other: Vault) -> bool:
        """True when `other` was made from the same master key (its chunk ids match)."""
        return hmac.compare_digest(self._id_key, other._id_key)

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        """The id of a chunk: keyed BLAKE3 of its plain data (equal data in two stores
        gets two unrelated ids)."""
        return bytes(blake3.blake3(data, key=self._id_key).digest())

    def seal(self, data: bytes, ad: bytes, nonce: bytes | None = None) -> bytes:
        """Version byte, nonce, AES-256-GCM ciphertext and tag of `data` bound to `ad`
        (`nonce`: fixed only for test vectors)."""
        nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        return bytes([SEAL_VERSION]) + nonce + self._aead.encrypt(nonce, data, ad)

    def seal_chunk(self, data: bytes, cid: bytes) -> bytearray:
        """`seal` of a chunk's stored bytes under its id, written in place into one buffer:
        a large copy costs fresh pages, about as much as the AES itself (same bytes)."""
        if not self._into:
            return bytearray(self.seal(data, chunk_ad(cid)))
        nonce = os.urandom(NONCE_BYTES)
        out = bytearray(OVERHEAD + len(data))
        out[0] = SEAL_VERSION
        out[1:1 + NONCE_BYTES] = nonce
        self._aead.encrypt_into(nonce, data, chunk_ad(cid), memoryview(out)[1 + NONCE_BYTES:])
        return out

    def open(self, sealed: bytes, ad: bytes, what: str) -> bytes:
        """The plain bytes of `sealed`; SealDamaged naming `what` when they fail."""
        if len(sealed) < OVERHEAD or sealed[0] != SEAL_VERSION:
            raise SealDamaged(f"{what} is damaged (not a sealed object of a known version)")
        view = memoryview(sealed)  # no copy of the ciphertext
        try:
            return self._aead.decrypt(view[1:1 + NONCE_BYTES], view[1 + NONCE_BYTES:], ad)
        except self._invalid:
            raise SealDamaged(f"{what} is damaged (it fails its authentication)") from None
