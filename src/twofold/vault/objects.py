"""An encrypted store's objects: VaultObjects seals every object on its way to the blob
backend and opens it on the way back, except store.json, the key files and the packs
(whose chunks the chunk store seals one by one); and the key files' life: make, unlock,
change the passphrase (docs/DESIGN.md, "Encryption")."""

from __future__ import annotations

import os
import re
import threading

import blake3

from twofold.blobs.objects import ObjectInfo, ObjectStore, StoreError
from twofold.vault.cipher import KEY_BYTES, Vault, object_ad
from twofold.vault.keys import KdfParams, KeyFileDamaged, WrongPassphrase, key_doc, unwrap

KEYS_DIR = "keys/"
PASSPHRASE_ENV = "TWOFOLD_PASSPHRASE"
_PLAIN = re.compile(r"store\.json|keys/.*|(?:vol-[0-9]{4}/)?packs/[0-9a-f]{2}/[0-9a-f]{64}\.pack")


class StoreLocked(StoreError):
    """An encrypted store was opened without a passphrase or key file."""


def is_plain(name: str) -> bool:
    """True for the objects an encrypted store keeps unsealed: store.json, key files, and
    packs (their chunks are sealed one by one, their index names keyed ids)."""
    return _PLAIN.fullmatch(name) is not None


class VaultObjects:
    """`inner` with every object but the plain ones sealed under `vault`, bound to its
    name (an object moved to another name does not open). `pending`: the key files of a
    new store, written just before the first object (a run refused before it writes
    anything leaves no key file behind)."""

    def __init__(self, inner: ObjectStore, vault: Vault,
                 pending: list[bytes] | None = None) -> None:
        self.inner = inner
        self.vault = vault
        self.writers = inner.writers
        self._pending = pending
        self._lock = threading.Lock()

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Pass on (sizes are the stored sizes)."""
        return self.inner.list(prefix)

    def get(self, name: str) -> bytes:
        """The opened object; SealDamaged when it fails its authentication."""
        data = self.inner.get(name)
        if is_plain(name):
            return data
        return self.vault.open(data, object_ad(name), f"{name} in {self.describe()}")

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Packs: pass on; a sealed object is opened whole, then cut."""
        if is_plain(name):
            return self.inner.get_range(name, offset, length)
        return self.get(name)[offset:offset + length]

    def put_once(self, name: str, data: bytes) -> bool:
        """Seal (unless plain) and pass on."""
        if self._pending is not None:
            with self._lock:
                if self._pending is not None:
                    for doc in self._pending:
                        _put_key(self.inner, doc)
                    self._pending = None
        if not is_plain(name):
            data = self.vault.seal(data, object_ad(name))
        return self.inner.put_once(name, data)

    def delete(self, name: str) -> None:
        """Pass on."""
        self.inner.delete(name)

    def exists(self, name: str) -> bool:
        """Pass on."""
        return self.inner.exists(name)

    def describe(self) -> str:
        """Pass on."""
        return self.inner.describe()

    def discard_partial(self) -> int:
        """Pass on."""
        return self.inner.discard_partial()


def plain_objects(objects: ObjectStore) -> ObjectStore:
    """The blob backend under a VaultObjects (`objects` itself otherwise)."""
    return objects.inner if isinstance(objects, VaultObjects) else objects


def vault_of(objects: ObjectStore) -> Vault | None:
    """The vault `objects` seals with, or None for a plain store."""
    return objects.vault if isinstance(objects, VaultObjects) else None


def key_names(objects: ObjectStore) -> list[str]:
    """The key files in the store (none in an unencrypted store)."""
    return [o.name for o in plain_objects(objects).list(KEYS_DIR) if o.name.endswith(".json")]


def _put_key(objects: ObjectStore, data: bytes) -> str:
    name = f"{KEYS_DIR}{blake3.blake3(data).hexdigest()}.json"
    plain_objects(objects).put_once(name, data)
    return name


def make_keys(objects: ObjectStore, passphrase: bytes,
              params: KdfParams | None = None) -> VaultObjects:
    """A new random master key, wrapped under `passphrase` in a new key file (written
    with the first object); the store's objects sealed with it. Only for a store that has
    no key file yet."""
    if key_names(objects):
        raise StoreError(f"{objects.describe()} already holds a key file")
    master = os.urandom(KEY_BYTES)
    return VaultObjects(plain_objects(objects), Vault(master),
                        [key_doc(master, passphrase, params or KdfParams())])


def _master(objects: ObjectStore, passphrase: bytes) -> tuple[bytes, list[str]]:
    plain = plain_objects(objects)
    names = key_names(plain)
    if not names:
        raise StoreLocked(f"{plain.describe()} holds no key file",
                          "an unencrypted store needs no passphrase")
    wrong: WrongPassphrase | None = None
    for name in names:
        try:
            return unwrap(plain.get(name), passphrase, f"{plain.describe()}/{name}"), names
        except WrongPassphrase as err:
            wrong = err
        except KeyFileDamaged:
            continue
    if wrong is None:
        raise KeyFileDamaged(f"every key file in {plain.describe()} is damaged",
                             "without one, the store cannot be read")
    raise WrongPassphrase(f"wrong passphrase for the encrypted store {plain.describe()}",
                          "check TWOFOLD_PASSPHRASE or the --key-file; nothing was written")


def unlock(objects: ObjectStore, passphrase: bytes) -> VaultObjects:
    """The encrypted store's objects, opened with `passphrase`; WrongPassphrase (nothing
    written) when it opens no key file."""
    return VaultObjects(plain_objects(objects), Vault(_master(objects, passphrase)[0]))


def change_passphrase(objects: ObjectStore, old: bytes, new: bytes,
                      params: KdfParams | None = None) -> str:
    """Wrap the master key under `new` in a new key file, then remove the old key files
    (the data is not touched; a crash in between leaves both passphrases working).
    Returns the new key file's name."""
    master, names = _master(objects, old)
    name = _put_key(objects, key_doc(master, new, params or KdfParams()))
    for gone in names:
        if gone != name:
            plain_objects(objects).delete(gone)
    return name
