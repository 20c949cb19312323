"""The image store a TARGET names: its objects, chunk store and manifests."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from twofold.fsinfo.volume import DriveId, check_drive, new_drive_id
from twofold.image.errors import ImageNotFound
from twofold.image.manifest import IMAGES_DIR, Manifest, manifest_object, parse_manifest
from twofold.store.chunkstore import STORE_FILE, ChunkStore
from twofold.store.lease import creating, exclusive
from twofold.store.objects import LocalObjects, ObjectMissing, ObjectStore
from twofold.store.remote import open_target

Target = str | ObjectStore
"""A folder, an sftp:// or s3:// URL (store/remote.py), or an opened ObjectStore."""

__all__ = ["Target", "all_manifests", "claim_drive", "creating", "exclusive", "image_names",
           "load_manifest", "open_objects", "open_store"]


def open_objects(target: Target) -> ObjectStore:
    """The ObjectStore for a TARGET: a path means `<path>/twofold-images/`."""
    return target if not isinstance(target, str) else open_target(target)


def claim_drive(objects: ObjectStore, seen_drive: DriveId | None = None,
                allow_system_disk: bool = False) -> DriveId | None:
    """Before the first write of a run into a store in a folder: refuse unless the folder
    is the store's drive (fsinfo.volume.check_drive; `seen_drive`: where this computer last
    found the store). The id to write into a new store's store.json, else None."""
    guard = objects.guard if isinstance(objects, LocalObjects) else None
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
        if isinstance(objects, LocalObjects) and objects.guard is not None:
            objects.guard.drive = store.drive
    else:
        store.check()
    store.load_index(repair=write)
    return store


def image_names(objects: ObjectStore) -> list[str]:
    """Names of the complete images, sorted by name."""
    return [o.name[len(IMAGES_DIR):-5] for o in objects.list(IMAGES_DIR)
            if o.name.endswith(".json") and "/" not in o.name[len(IMAGES_DIR):]]


def load_manifest(objects: ObjectStore, name: str) -> Manifest:
    """An image's manifest; ImageNotFound listing the images there when absent."""
    obj = manifest_object(name)
    try:
        data = objects.get(obj)
    except ObjectMissing:
        known = ", ".join(image_names(objects)) or "none"
        raise ImageNotFound(f"no image {name!r} in {objects.describe()}",
                            f"images there: {known}") from None
    return parse_manifest(data, f"{objects.describe()}/{obj}")


def all_manifests(objects: ObjectStore) -> list[Manifest]:
    """Every image's manifest, oldest first (fetched `objects.writers` at a time: over a
    network each GET is a round trip)."""
    names = image_names(objects)
    if objects.writers > 1 and len(names) > 1:
        with ThreadPoolExecutor(objects.writers, thread_name_prefix="twofold-manifest") as pool:
            found = list(pool.map(lambda n: load_manifest(objects, n), names))
    else:
        found = [load_manifest(objects, n) for n in names]
    return sorted(found, key=lambda m: (m.created_ns, m.name))
