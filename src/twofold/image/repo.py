"""The image store a TARGET names: its objects, chunk store, manifests and lock."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from twofold.core.clock import Clock
from twofold.image.errors import ImageNotFound
from twofold.image.manifest import IMAGES_DIR, Manifest, manifest_object, parse_manifest
from twofold.store.chunkstore import ChunkStore
from twofold.store.objects import LocalObjects, ObjectMissing, ObjectStore, StoreError

STORE_DIR = "twofold-images"
"""The store's folder on a local target (beside the backup sets' `twofold/`)."""
LOCK = "locks/exclusive.json"

Target = str | ObjectStore


def open_objects(target: Target) -> ObjectStore:
    """The ObjectStore for a TARGET: a path means `<path>/twofold-images/`."""
    if not isinstance(target, str):
        return target
    if not os.path.isdir(target):
        raise StoreError(f"target {target} does not exist or is not a folder",
                         "is the drive plugged in and mounted?")
    return LocalObjects(os.path.join(target, STORE_DIR))


def open_store(target: Target, volume_size: int | None = None, write: bool = False
               ) -> ChunkStore:
    """The chunk store with its index loaded (repaired from packs when `write`)."""
    store = ChunkStore(open_objects(target), volume_size)
    if write:
        store.init()
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
    """Every image's manifest, oldest first."""
    found = [load_manifest(objects, n) for n in image_names(objects)]
    return sorted(found, key=lambda m: (m.created_ns, m.name))


@contextmanager
def exclusive(objects: ObjectStore, clock: Clock) -> Iterator[None]:
    """Hold the store's exclusive lock (delete, prune); refused while another holds it."""
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since_ns": clock.now_ns()}
    if not objects.put_once(LOCK, json.dumps(me).encode()):
        try:
            holder = json.loads(objects.get(LOCK))
        except (StoreError, ValueError):
            holder = {}
        raise StoreError(
            f"the image store {objects.describe()} is locked by pid {holder.get('pid')} on "
            f"{holder.get('host')}",
            f"if no twofold runs there, delete {LOCK} in the store")
    try:
        yield
    finally:
        objects.delete(LOCK)
