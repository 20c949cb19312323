"""What deleting each image would free: the stored (compressed) size of the chunks that no
other image of the store needs. Read-only; the Images page shows it beside each image."""

from __future__ import annotations

from collections import Counter

from twofold.image.repo import Target, all_manifests, open_store


def frees(target: Target) -> dict[str, int]:
    """Image name: bytes its deletion would free (packs are rewritten without them)."""
    store = open_store(target)
    manifests = all_manifests(store.objects)
    chunks = {m.name: m.chunk_ids() for m in manifests}
    users: Counter[bytes] = Counter()
    for ids in chunks.values():
        users.update(ids)
    found: dict[str, int] = {}
    for name, ids in chunks.items():
        total = 0
        for cid in ids:
            loc = store.location(cid) if users[cid] == 1 else None
            total += loc.length if loc is not None else 0
        found[name] = total
    return found
