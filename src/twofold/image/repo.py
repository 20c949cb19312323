"""The image store a TARGET names: its objects, chunk store, manifests and lock."""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twofold.core.clock import Clock
from twofold.image.errors import ImageNotFound
from twofold.image.manifest import IMAGES_DIR, Manifest, manifest_object, parse_manifest
from twofold.store.chunkstore import ChunkStore
from twofold.store.holders import is_stale
from twofold.store.holders import me as holder_me
from twofold.store.objects import LocalObjects, ObjectMissing, ObjectStore, StoreError

STORE_DIR = "twofold-images"
"""The store's folder on a local target (beside the backup sets' `twofold/`)."""
LOCK = "locks/exclusive.json"
CREATE_LOCKS = "locks/create-"

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


def _holder(objects: ObjectStore, name: str) -> dict[str, Any]:
    try:
        doc = json.loads(objects.get(name))
    except (StoreError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _busy(objects: ObjectStore, name: str, what: str) -> StoreError:
    holder = _holder(objects, name)
    return StoreError(
        f"the image store {objects.describe()} is busy: {what} by pid {holder.get('pid')} "
        f"on {holder.get('host')}",
        f"wait for it to finish; if no twofold runs there, delete {name} in the store")


def _take(objects: ObjectStore, name: str, clock: Clock) -> None:
    me = {**holder_me(), "since_ns": clock.now_ns()}
    if objects.put_once(name, json.dumps(me).encode()):
        return
    if is_stale(_holder(objects, name)):
        objects.delete(name)
        if objects.put_once(name, json.dumps(me).encode()):
            return
    raise _busy(objects, name, "locked")


@contextmanager
def exclusive(objects: ObjectStore, clock: Clock) -> Iterator[None]:
    """Hold the store's exclusive lock (delete, prune): refused while another delete or
    prune, or any create, runs. Locks of dead processes on this host are stale."""
    _take(objects, LOCK, clock)
    try:
        for obj in objects.list(CREATE_LOCKS):
            if is_stale(_holder(objects, obj.name)):
                objects.delete(obj.name)
            else:
                raise _busy(objects, obj.name, "an image is being created")
        yield
    finally:
        objects.delete(LOCK)


@contextmanager
def creating(objects: ObjectStore, clock: Clock) -> Iterator[None]:
    """Mark a create as running (many may run at once); refused while a delete or prune
    holds the exclusive lock, which could free the chunks this create reuses."""
    name = f"{CREATE_LOCKS}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.json"
    _take(objects, name, clock)
    try:
        if objects.exists(LOCK):
            if not is_stale(_holder(objects, LOCK)):
                raise _busy(objects, LOCK, "images are being deleted")
            objects.delete(LOCK)
        yield
    finally:
        objects.delete(name)
