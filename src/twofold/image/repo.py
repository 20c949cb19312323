"""The image store a TARGET names: its objects, chunk store and manifests."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from twofold.blobs.objects import LocalObjects, ObjectMissing, ObjectStore
from twofold.blobs.remote import open_target
from twofold.chunks.chunkstore import ChunkStore
from twofold.chunks.indexfiles import STORE_FILE
from twofold.chunks.lease import creating, exclusive
from twofold.fsinfo.volume import DriveId, check_drive, new_drive_id
from twofold.image.errors import ImageNotFound
from twofold.image.manifest import (
    IMAGES_DIR,
    Manifest,
    ManifestError,
    manifest_object,
    parse_manifest,
)
from twofold.vault.cipher import SealDamaged
from twofold.vault.objects import PASSPHRASE_ENV, StoreLocked, key_names, plain_objects, unlock

Target = str | ObjectStore
"""A folder, an sftp:// or s3:// URL (blobs/remote.py), or an opened ObjectStore."""

__all__ = ["Manifests", "Target", "all_manifests", "claim_drive", "creating", "exclusive",
           "image_names", "load_manifest", "open_objects", "open_store", "read_manifests"]

_HEX_ID = re.compile(rb"[0-9a-f]{64}")


@dataclass
class Manifests:
    """The store's images: the readable manifests, oldest first, and the damaged ones."""

    good: list[Manifest] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)
    """image name -> what is wrong with its manifest"""
    salvaged_ids: set[bytes] = field(default_factory=set)
    """every chunk id a damaged manifest still shows: kept when chunks are freed"""


def open_objects(target: Target) -> ObjectStore:
    """The ObjectStore for a TARGET: a path means `<path>/twofold-images/`. An encrypted
    store is passed in unlocked (vault.objects.unlock); named by a string, StoreLocked."""
    if not isinstance(target, str):
        return target
    objects = open_target(target)
    if key_names(objects):
        raise _locked(objects)
    return objects


def _locked(objects: ObjectStore) -> StoreLocked:
    return StoreLocked(f"the image store at {objects.describe()} is encrypted",
                       f"give its passphrase in {PASSPHRASE_ENV} or a file holding it with "
                       "--key-file")


def open_keyed(target: str, endpoint: str | None, passphrase: bytes | None) -> ObjectStore:
    """The store a TARGET text names, unlocked with `passphrase` when encrypted (for the
    engines that hand the TARGET on to a process of their own: mount, files)."""
    objects = open_target(target, endpoint)
    if key_names(objects):
        if passphrase is None:
            raise _locked(objects)
        return unlock(objects, passphrase)
    return objects


def local_of(objects: ObjectStore) -> LocalObjects | None:
    """The local folder store under `objects` (unsealed), or None for a network store."""
    plain = plain_objects(objects)
    return plain if isinstance(plain, LocalObjects) else None


def claim_drive(objects: ObjectStore, seen_drive: DriveId | None = None,
                allow_system_disk: bool = False) -> DriveId | None:
    """Before the first write of a run into a store in a folder: refuse unless the folder
    is the store's drive (fsinfo.volume.check_drive; `seen_drive`: where this computer last
    found the store). The id to write into a new store's store.json, else None."""
    local = local_of(objects)
    guard = local.guard if local is not None else None
    if guard is None:
        return None
    found = objects.exists(STORE_FILE)
    check_drive(guard.where, found, seen_drive, "the image store", allow_system_disk)
    return None if found else new_drive_id(os.fsdecode(guard.folder))


def open_store(target: Target, volume_size: int | None = None, write: bool = False,
               drive: DriveId | None = None) -> ChunkStore:
    """The chunk store with its index loaded (repaired from packs when `write`); a new
    store is marked with `drive` (claim_drive)."""
    objects = open_objects(target)
    store = ChunkStore(objects, volume_size)
    if write:
        store.init(drive)
        if (local := local_of(objects)) is not None and local.guard is not None:
            local.guard.drive = store.drive
    else:
        store.check()
    store.load_index(repair=write)
    return store


def image_names(objects: ObjectStore) -> list[str]:
    """Names of the complete images, sorted by name (a file under images/ whose name is
    no valid image name is not an image)."""
    names = []
    for o in objects.list(IMAGES_DIR):
        name = o.name[len(IMAGES_DIR):-5]
        if o.name.endswith(".json") and "/" not in name:
            try:
                manifest_object(name)
            except ManifestError:
                continue
            names.append(name)
    return names


def _get(objects: ObjectStore, name: str) -> bytes:
    try:
        return objects.get(manifest_object(name))
    except ObjectMissing:
        known = ", ".join(image_names(objects)) or "none"
        raise ImageNotFound(f"no image {name!r} in {objects.describe()}",
                            f"images there: {known}") from None


def load_manifest(objects: ObjectStore, name: str) -> Manifest:
    """An image's manifest, checked; ImageNotFound listing the images there when absent,
    ManifestError when damaged."""
    data = _get(objects, name)
    return parse_manifest(data, f"{objects.describe()}/{manifest_object(name)}", name)


def read_manifests(objects: ObjectStore) -> Manifests:
    """Every image's manifest, the damaged ones named and skipped (fetched `writers` at a
    time: over a network each GET is a round trip)."""
    names = image_names(objects)

    def one(name: str) -> Manifest | tuple[str, bytes]:
        try:
            data = _get(objects, name)
        except SealDamaged as err:
            return err.message, b""
        try:
            return parse_manifest(data, f"{objects.describe()}/{manifest_object(name)}",
                                  name)
        except ManifestError as err:
            return err.message, data

    if objects.writers > 1 and len(names) > 1:
        with ThreadPoolExecutor(objects.writers, thread_name_prefix="twofold-manifest") as pool:
            found = list(pool.map(one, names))
    else:
        found = [one(n) for n in names]
    out = Manifests()
    for name, got in zip(names, found, strict=True):
        if isinstance(got, Manifest):
            out.good.append(got)
        else:
            out.damaged[name] = got[0]
            out.salvaged_ids.update(bytes.fromhex(h.decode())
                                    for h in _HEX_ID.findall(got[1]))
    out.good.sort(key=lambda m: (m.created_ns, m.name))
    return out


def all_manifests(objects: ObjectStore) -> list[Manifest]:
    """Every readable image's manifest, oldest first (damaged ones skipped)."""
    return read_manifests(objects).good
