"""Key files: the store's master key wrapped with AES-256-GCM under a key derived from the
passphrase by Argon2id, whose parameters and salt the file holds (docs/FORMAT.md,
"Key files"). Changing the passphrase rewrites this file only. No I/O. argon2 and
cryptography are imported when a key is made or opened (plain stores never do)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from twofold.blobs.objects import StoreError
from twofold.vault.cipher import KEY_BYTES, NONCE_BYTES, SEAL_VERSION

KEY_FORMAT = "twofold-key"
KEY_VERSION = 1
WRAP_AD = b"twofold key v1"
SALT_BYTES = 16


class WrongPassphrase(StoreError):
    """The passphrase (or key file) does not open the store's key."""


class KeyFileDamaged(StoreError):
    """A key file is not one this twofold reads."""


@dataclass(frozen=True)
class KdfParams:
    """Argon2id's cost: passes, memory in KiB, lanes (RFC 9106's second choice by default:
    3 passes over 64 MiB, 4 lanes; about 0.1-0.3 s on a PC)."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4


def derive(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    """The 32-byte key-encryption key for `passphrase` (Argon2id, version 0x13)."""
    from argon2.low_level import Type, hash_secret_raw

    return hash_secret_raw(passphrase, salt, params.time_cost, params.memory_kib,
                           params.parallelism, KEY_BYTES, Type.ID)


def key_doc(master: bytes, passphrase: bytes, params: KdfParams,
            salt: bytes | None = None, nonce: bytes | None = None) -> bytes:
    """A key file's bytes: `master` wrapped under `passphrase` (`salt`, `nonce`: random
    unless given, for test vectors)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    kek = derive(passphrase, salt, params)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    wrapped = bytes([SEAL_VERSION]) + nonce + AESGCM(kek).encrypt(nonce, master, WRAP_AD)
    doc = {"format": KEY_FORMAT, "version": KEY_VERSION,
           "kdf": {"name": "argon2id", "version": 19, "time_cost": params.time_cost,
                   "memory_kib": params.memory_kib, "parallelism": params.parallelism,
                   "salt": salt.hex()},
           "cipher": "aes-256-gcm", "wrapped": wrapped.hex()}
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _field(doc: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise KeyFileDamaged(f"key file {where} is damaged ({key} is missing or wrong)")
    return value


def unwrap(data: bytes, passphrase: bytes, where: str) -> bytes:
    """The master key in key file `data`; WrongPassphrase when `passphrase` does not open
    it, KeyFileDamaged when it is not a key file."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise KeyFileDamaged(f"key file {where} is damaged (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != KEY_FORMAT:
        raise KeyFileDamaged(f"key file {where} is damaged (not a twofold key file)")
    if doc.get("version") != KEY_VERSION or doc.get("cipher") != "aes-256-gcm":
        raise KeyFileDamaged(f"key file {where} is of an unknown version or cipher",
                             "a newer twofold may read it")
    kdf = _field(doc, "kdf", dict, where)
    if kdf.get("name") != "argon2id" or kdf.get("version") != 19:
        raise KeyFileDamaged(f"key file {where} names an unknown key derivation")
    params = KdfParams(_field(kdf, "time_cost", int, where), _field(kdf, "memory_kib", int, where),
                       _field(kdf, "parallelism", int, where))
    if not (1 <= params.time_cost <= 64 and 8 <= params.memory_kib <= 1 << 22
            and 1 <= params.parallelism <= 64):
        raise KeyFileDamaged(f"key file {where} holds Argon2id costs out of range")
    try:
        salt = bytes.fromhex(_field(kdf, "salt", str, where))
        wrapped = bytes.fromhex(_field(doc, "wrapped", str, where))
    except ValueError:
        raise KeyFileDamaged(f"key file {where} is damaged (bad hex)") from None
    if len(wrapped) != 1 + NONCE_BYTES + KEY_BYTES + 16 or wrapped[0] != SEAL_VERSION:
        raise KeyFileDamaged(f"key file {where} is damaged (wrapped key of a wrong size)")
    kek = derive(passphrase, salt, params)
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(kek).decrypt(wrapped[1:1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES:],
                                   WRAP_AD)
    except InvalidTag:
        raise WrongPassphrase(f"wrong passphrase for the encrypted store ({where})",
                              "check TWOFOLD_PASSPHRASE or the --key-file; nothing was "
                              "written") from None
