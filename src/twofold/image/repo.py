"""The image store a TARGET names: its objects, chunk store and manifests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from twofold.image.errors import ImageNotFound
from twofold.image.manifest import IMAGES_DIR, Manifest, manifest_object, parse_manifest
from twofold.store.chunkstore import ChunkStore
from twofold.store.lease import creating, exclusive
from twofold.store.objects import ObjectMissing, ObjectStore
from twofold.store.remote import open_target

Target = str | ObjectStore
"""A folder, an sftp:// or s3:// URL (store/remote.py), or an opened ObjectStore."""

__all__ = ["Target", "all_manifests", "creating", "exclusive", "image_names",
           "load_manifest", "open_objects", "open_store"]


def open_objects(target: Target) -> ObjectStore:
    """The ObjectStore for a TARGET: a path means `<path>/twofold-images/`."""
    return target if not isinstance(target, str) else open_target(target)


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
    """Every image's manifest, oldest first (fetched `objects.writers` at a time: over a
    network each GET is a round trip)."""
    names = image_names(objects)
    if objects.writers > 1 and len(names) > 1:
        with ThreadPoolExecutor(objects.writers, thread_name_prefix="twofold-manifest") as pool:
            found = list(pool.map(lambda n: load_manifest(objects, n), names))
    else:
        found = [load_manifest(objects, n) for n in names]
    return sorted(found, key=lambda m: (m.created_ns, m.name))
