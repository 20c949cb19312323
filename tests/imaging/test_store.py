"""The local object store and the chunk store: no rewrite of stored chunks, volumes,
index rebuild, freeing (the contract every storage kind passes is in test_targets.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from twofold.blobs.objects import LocalObjects, StoreError
from twofold.chunks.chunkstore import ChunkStore
from twofold.chunks.packs import chunk_id, compress
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.manage import delete, list_images, prune
from twofold.image.verify import verify

from .conftest import FixedClock, MiB, store_files


def test_local_store_leaves_no_temp_files(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path / "s")
    objects.put_once("x/y", b"data")
    assert os.listdir(tmp_path / "s" / ".tmp") == []
    assert [o.name for o in objects.list()] == ["x/y"]


def _chunk(seed: int) -> bytes:
    return os.urandom(8) + bytes([seed]) * (MiB - 8)


def test_chunks_stored_once_and_index_rebuilt(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path / "s")
    store = ChunkStore(objects)
    store.init()
    data = [_chunk(i) for i in range(5)]
    for d in [*data, data[0]]:
        store.add(chunk_id(d), compress(d, 1), len(d))
    store.commit_index()
    assert store.new_chunks == 5
    for f in objects.list("index/"):
        objects.delete(f.name)  # the index is a cache: packs carry their own
    again = ChunkStore(objects)
    assert len(again.load_index(repair=True)) == 1
    assert [again.load(chunk_id(d)) for d in data] == data
    assert len(objects.list("index/")) == 1
    assert not again.add(chunk_id(data[2]), b"", len(data[2]))


def test_volumes_hold_no_more_than_their_size(tmp_path: Path) -> None:
    src = tmp_path / "rand.img"
    src.write_bytes(os.urandom(40 * MiB))
    target = tmp_path / "drive"
    target.mkdir()
    create(str(src), str(target), "v", 1, 16 * MiB, False, NullProgress(), FixedClock())
    root = target / "twofold-images"
    volumes = sorted(p for p in root.iterdir() if p.name.startswith("vol-"))
    assert [v.name for v in volumes][:3] == ["vol-0001", "vol-0002", "vol-0003"]
    for v in volumes:
        assert sum(p.stat().st_size for p in v.rglob("*")) <= 16 * MiB
    assert not verify(str(target), "v", NullProgress(), FixedClock()).damages


def test_zero_chunks_not_stored(tmp_path: Path) -> None:
    src = tmp_path / "zeros.img"
    with open(src, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(20 * MiB)
        f.write(b"x" * 100)
    target = tmp_path / "drive"
    target.mkdir()
    r = create(str(src), str(target), "z", 3, None, False, NullProgress(), FixedClock())
    assert (r.zero_chunks, r.new_chunks) == (63, 1)
    assert sum(p.stat().st_size for p in store_files(target, ".pack")) < 4096


def test_delete_and_prune_free_unreferenced_chunks(tmp_path: Path) -> None:
    target = tmp_path / "drive"
    target.mkdir()
    clock = FixedClock()
    common = os.urandom(8 * MiB)
    for i in range(3):
        src = tmp_path / f"s{i}.img"
        src.write_bytes(common + os.urandom(4 * MiB))  # 8 shared chunks, 4 own
        create(str(src), str(target), f"i{i}", 1, None, False, NullProgress(), clock)
    size = lambda: sum(p.stat().st_size for p in store_files(target, ".pack"))  # noqa: E731
    full = size()
    assert 19 * MiB < full < 21 * MiB
    r = delete(str(target), "i1", NullProgress(), clock)
    assert r.deleted == ["i1"] and r.packs_changed == 1
    assert 15 * MiB < size() < 17 * MiB
    r = prune(str(target), 1, NullProgress(), clock)
    assert r.deleted == ["i0"] and r.kept == ["i2"]
    assert 11 * MiB < size() < 13 * MiB
    assert [i.name for i in list_images(str(target))] == ["i2"]
    assert not verify(str(target), None, NullProgress(), clock).damages
    locks = [p.name for p in (target / "twofold-images" / "locks").iterdir()]
    assert locks == ["exclusive-0000000002.000001.json"]  # the last one, marked released


def test_a_store_whose_folder_is_gone_writes_nothing(tmp_path: Path) -> None:
    """A drive unmounted lazily mid-run leaves its empty mount point: an object written
    then fails, and no folder of the store is made again on the system disk."""
    mount = tmp_path / "BACKUP"
    objects = LocalObjects(mount / "twofold-images")
    os.makedirs(mount / "twofold-images")
    assert objects.put_once("packs/ab/first.pack", b"data")
    for child in mount.iterdir():  # what the empty mount point shows after the unmount
        shutil.rmtree(child)
    with pytest.raises(StoreError, match="image store's folder is gone"):
        objects.put_once("packs/cd/second.pack", b"data")
    with pytest.raises(StoreError, match="image store's folder is gone"):
        objects.put_once("top-level.json", b"{}")
    assert list(mount.iterdir()) == []
