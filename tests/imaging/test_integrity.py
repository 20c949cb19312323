"""Self-checking stores (issue 15): a flipped bit in a manifest, an index file or
store.json is caught and named; damaged chunks are recorded and stored again by the next
create; `verify --heal` mends from another store or the source; `repair` rebuilds."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import blake3
import pytest
import zstandard

from twofold.blobs.objects import StoreError
from twofold.chunks.indexfiles import IndexDamaged, parse_index_file
from twofold.chunks.packs import chunk_id
from twofold.chunks.sealed import seal, unseal
from twofold.core.progress import NullProgress
from twofold.fsinfo.blockio import FileReader
from twofold.image.copy import copy
from twofold.image.create import _chunk_work, create
from twofold.image.errors import ImageDamaged
from twofold.image.heal import heal
from twofold.image.manage import delete, list_store, prune
from twofold.image.manifest import ManifestError, chunk_spans, parse_manifest
from twofold.image.repair import repair
from twofold.image.repo import load_manifest, open_store
from twofold.image.restore import restore
from twofold.image.verify import verify

from .conftest import FixedClock, MiB, blank, store_files
from .test_damage import _volume

P, C = NullProgress(), FixedClock()


@pytest.fixture
def imaged(tmp_path: Path) -> tuple[Path, Path]:
    src = _volume(tmp_path / "vol.img", seed=7)
    target = tmp_path / "drive"
    target.mkdir()
    create(str(src), str(target), "one", 3, None, False, P, C)
    return src, target


def _flip_packs(target: Path, flips: int = 3, seed: int = 1) -> None:
    """Flip bits in the stored chunks of the packs (never in their own index)."""
    rng = random.Random(seed)
    for pack in store_files(target, ".pack"):
        data = bytearray(pack.read_bytes())
        for _ in range(flips):
            data[rng.randrange(8, len(data) // 2)] ^= 1 << rng.randrange(8)
        pack.write_bytes(bytes(data))


def _manifest(target: Path, name: str) -> Path:
    return target / "twofold-images" / "images" / f"{name}.json"


def test_damaged_chunks_are_stored_again_by_the_next_create(
        imaged: tuple[Path, Path], tmp_path: Path) -> None:
    src, target = imaged
    _flip_packs(target)
    found = verify(str(target), None, P, C)
    assert found.damages and found.recorded_bad == len(found.bad_ids) > 0
    assert len(list((target / "twofold-images" / "bad").iterdir())) == 1
    again = create(str(src), str(target), "two", 3, None, False, P, C)
    assert again.new_chunks == len(found.bad_ids) and again.stored_new_bytes > 0
    out = tmp_path / "two.img"
    restore(str(target), "two", str(out), None, P, C)
    assert out.read_bytes() == src.read_bytes()
    assert verify(str(target), None, P, C).sound  # "one" shares the chunks stored again


def test_a_flipped_bit_in_a_manifest_is_caught_and_named(imaged: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    src, target = imaged
    path = _manifest(target, "one")
    data = path.read_bytes()
    at = data.index(b'"extents":[[') + len(b'"extents":[[')
    path.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])  # 0 -> 1
    with pytest.raises(ManifestError, match="damaged: its checksum does not match"):
        restore(str(target), "one", str(tmp_path / "o.img"), None, P, C)
    assert not (tmp_path / "o.img").exists()
    assert set(list_store(str(target)).damaged) == {"one"}
    found = verify(str(target), None, P, C)
    assert not found.sound and set(found.damaged_manifests) == {"one"}
    made = create(str(src), str(target), "two", 3, None, False, P, C)
    assert [i.path for i in made.issues] == [b"one"] and made.new_chunks == 0
    kept = prune(str(target), 1, P, C)
    assert kept.deleted == [] and set(kept.damaged) == {"one"}
    gone = delete(str(target), "one", P, C)
    assert gone.deleted == ["one"] and not gone.damaged and gone.bytes_freed == 0
    restore(str(target), "two", str(tmp_path / "t.img"), None, P, C)
    assert (tmp_path / "t.img").read_bytes() == src.read_bytes()


def test_a_truncated_manifest_keeps_its_chunks_until_deleted(imaged: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    _src, target = imaged
    blank(tmp_path / "other.img", 4 * MiB)
    create(str(tmp_path / "other.img"), str(target), "zero", 3, None, False, P, C)
    path = _manifest(target, "one")
    whole = path.read_bytes()
    cut = whole[:whole.index(b'"chunks":') + 200]  # the first chunk ids survive
    path.write_bytes(cut)
    shown = {c for c in open_store(str(target)).index if c.hex().encode() in cut}
    assert shown and len(shown) < len(open_store(str(target)).index)
    r = prune(str(target), 1, P, C)
    assert r.deleted == [] and "one" in r.damaged and r.packs_changed == 1
    assert set(open_store(str(target)).index) == shown  # what the damaged one shows stays
    delete(str(target), "one", P, C)
    assert not store_files(target, ".pack")  # "zero" needs no stored chunk
    assert list_store(str(target)).damaged == {}


def _crafted(target: Path, change: str) -> bytes:
    """The manifest of "one", edited as `change` says and sealed again."""
    doc = unseal(_manifest(target, "one").read_bytes())
    area = doc["areas"][0]
    if change == "shifted":  # the bit flip of the issue, with a checksum to match
        area["extents"][0][0] += 1
    elif change == "overlap":
        area["extents"] = [[0, 2 * MiB], [MiB, 2 * MiB], *area["extents"][1:]]
    elif change == "outside":
        area["extents"][-1][1] += MiB
    elif change == "cell":
        area["chunks"][0][0] = 5
    elif change == "name":
        doc["name"] = "../../etc/passwd"
    return seal(doc)


@pytest.mark.parametrize("change", ["shifted", "overlap", "outside", "cell", "name"])
def test_a_crafted_manifest_with_a_good_checksum_is_refused(
        imaged: tuple[Path, Path], tmp_path: Path, change: str) -> None:
    _src, target = imaged
    data = _crafted(target, change)
    with pytest.raises(ManifestError, match=r"impossible image|bad image name"):
        parse_manifest(data, "crafted", "one")
    _manifest(target, "one").write_bytes(data)
    with pytest.raises(ManifestError):
        restore(str(target), "one", str(tmp_path / "o.img"), None, P, C)
    assert not (tmp_path / "o.img").exists()


def test_a_damaged_index_file_is_not_used_and_repair_rebuilds_it(
        imaged: tuple[Path, Path], tmp_path: Path) -> None:
    src, target = imaged
    index = next(p for p in store_files(target, ".json") if p.parent.name == "index")
    data = bytearray(index.read_bytes())
    at = data.index(b'",') + 100  # inside the first row: an offset or a length
    data[at] ^= 1
    index.write_bytes(bytes(data))
    store = open_store(str(target))
    assert list(store.damaged_files) == [f"index/{index.name}"]
    assert store.location(next(iter(store.index))) is not None  # the packs' own indexes
    restore(str(target), "one", str(tmp_path / "o.img"), None, P, C)
    assert (tmp_path / "o.img").read_bytes() == src.read_bytes()
    assert not verify(str(target), None, P, C).sound  # named until repaired
    r = repair(str(target), P, C)
    assert list(r.index_files_damaged) == [f"index/{index.name}"] and r.index_written
    assert not r.remaining and r.index_written == f"index/{index.name}"  # the same bytes
    assert blake3.blake3(index.read_bytes()).hexdigest() == index.stem  # ... sound again
    assert verify(str(target), None, P, C).sound
    assert not repair(str(target), P, C).index_written  # nothing left to do


def test_repair_finds_a_crafted_index_the_packs_disagree_with(
        imaged: tuple[Path, Path]) -> None:
    _src, target = imaged
    index = next(p for p in store_files(target, ".json") if p.parent.name == "index")
    doc = unseal(index.read_bytes())
    pack = next(iter(doc["packs"]))
    doc["packs"][pack][0][1] += 1  # a wrong offset, sealed and named rightly
    data = seal(doc)
    index.unlink()
    (index.parent / f"{blake3.blake3(data).hexdigest()}.json").write_bytes(data)
    r = repair(str(target), P, C)
    assert r.packs_reindexed == 1 and len(r.index_files_damaged) == 1 and not r.remaining
    assert verify(str(target), None, P, C).sound


def test_a_damaged_store_json_is_named_and_made_again(imaged: tuple[Path, Path]) -> None:
    _src, target = imaged
    marker = target / "twofold-images" / "store.json"
    marker.write_bytes(marker.read_bytes().replace(b"1048576", b"1048577"))
    with pytest.raises(StoreError, match=r"(?s)store.json .* is damaged.*image repair"):
        list_store(str(target))
    r = repair(str(target), P, C)
    assert r.marker_remade and not r.remaining
    assert json.loads(marker.read_bytes())["chunk_size"] == MiB
    assert verify(str(target), None, P, C).sound


def test_heal_from_another_store(imaged: tuple[Path, Path], tmp_path: Path) -> None:
    src, target = imaged
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    copy(str(target), str(offsite), None, P, C)
    _flip_packs(target)
    with pytest.raises(ImageDamaged):
        restore(str(target), "one", str(tmp_path / "bad.img"), None, P, C)
    h = heal(str(target), None, P, C, other=str(offsite))
    assert h.found.damages and h.healed == len(h.found.bad_ids) and h.sound
    out = tmp_path / "o.img"
    restore(str(target), "one", str(out), None, P, C)
    assert out.read_bytes() == src.read_bytes()


def test_heal_a_manifest_from_another_store(imaged: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    src, target = imaged
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    copy(str(target), str(offsite), None, P, C)
    path = _manifest(target, "one")
    path.write_bytes(path.read_bytes()[:200])
    h = heal(str(target), None, P, C, other=str(offsite))
    assert h.manifests_healed == ["one"] and h.sound
    restore(str(target), "one", str(tmp_path / "o.img"), None, P, C)
    assert (tmp_path / "o.img").read_bytes() == src.read_bytes()


def test_heal_from_the_source(imaged: tuple[Path, Path], tmp_path: Path) -> None:
    src, target = imaged
    _flip_packs(target, flips=5, seed=2)
    h = heal(str(target), "one", P, C, source=str(src))
    assert h.healed == len(h.found.bad_ids) > 0 and h.sound
    out = tmp_path / "o.img"
    restore(str(target), "one", str(out), None, P, C)
    assert out.read_bytes() == src.read_bytes()


def test_heal_from_a_changed_source_takes_nothing(imaged: tuple[Path, Path]) -> None:
    src, target = imaged
    _flip_packs(target, flips=5, seed=2)
    src.write_bytes(bytes(src.stat().st_size))  # the disk was wiped since
    h = heal(str(target), "one", P, C, source=str(src))
    assert h.healed == 0 and h.unhealed == len(h.found.bad_ids) > 0 and not h.sound


@pytest.mark.parametrize("where", ["header", "own index"])
def test_repair_writes_anew_a_pack_whose_own_index_is_damaged(
        imaged: tuple[Path, Path], tmp_path: Path, where: str) -> None:
    src, target = imaged
    pack = store_files(target, ".pack")[0]
    data = bytearray(pack.read_bytes())
    data[3 if where == "header" else len(data) - 30] ^= 4
    pack.write_bytes(bytes(data))
    assert verify(str(target), None, P, C).sound  # the index file still finds every chunk
    r = repair(str(target), P, C)
    assert r.packs_rewritten == [pack.relative_to(target / "twofold-images").as_posix()]
    assert not r.remaining  # written again: the same bytes as before, so the same name
    assert blake3.blake3(pack.read_bytes()).hexdigest() == pack.stem
    again = repair(str(target), P, C)
    assert not again.packs_damaged and not again.index_written
    for index in (target / "twofold-images" / "index").iterdir():
        index.unlink()  # the new pack's own index alone must do
    restore(str(target), "one", str(tmp_path / "o.img"), None, P, C)
    assert (tmp_path / "o.img").read_bytes() == src.read_bytes()


def test_copy_records_the_damage_it_finds_in_the_source(imaged: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    src, target = imaged
    _flip_packs(target, flips=1, seed=4)
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    with pytest.raises(ImageDamaged, match="of the source fails its check"):
        copy(str(target), str(offsite), None, P, C)
    assert len(list((target / "twofold-images" / "bad").iterdir())) == 1
    assert open_store(str(target)).bad  # never reused: the next create stores it again
    assert create(str(src), str(target), "two", 3, None, False, P, C).new_chunks == 1
    copy(str(target), str(offsite), None, P, C)
    restore(str(offsite), "one", str(tmp_path / "o.img"), None, P, C)
    assert (tmp_path / "o.img").read_bytes() == src.read_bytes()


def test_the_parents_cell_is_stored_again_when_its_chunk_was_found_damaged(
        imaged: tuple[Path, Path]) -> None:
    """create reads a cell as the previous image held it when its used blocks are a
    subset of those (freed blocks): that shortcut must not reuse a chunk found damaged."""
    src, target = imaged
    cid = next(c for c in open_store(str(target)).index)
    m = load_manifest(open_store(str(target)).objects, "one")
    _ref, pieces = next((r, p) for a in m.areas for r, p in chunk_spans(a, m.chunk_size)
                       if r.id == cid)
    fewer = [(pieces[0][0], 4096)]  # blocks freed since: a subset of the parent's
    with FileReader(src) as reader:
        sound = open_store(str(target), write=True)
        assert _chunk_work(reader, 0, fewer, sound, 3, (pieces, cid)) == (cid, None, pieces)
        sound.forget(cid, sound.index[cid].pack)  # as verify does when it fails its check
        got, stored, used = _chunk_work(reader, 0, fewer, sound, 3, (pieces, cid))
    assert (got, used) == (cid, pieces) and stored is not None
    assert chunk_id(zstandard.ZstdDecompressor().decompress(stored)) == cid


def test_pack_and_image_names_from_an_index_or_manifest_are_checked(
        imaged: tuple[Path, Path]) -> None:
    _src, target = imaged
    for bad in ("../../outside.pack", "/etc/x.pack", "packs/ab/cd.pack"):
        data = seal({"version": 2, "packs": {bad: []}})
        with pytest.raises(IndexDamaged, match="bad pack name"):
            parse_index_file(f"index/{blake3.blake3(data).hexdigest()}.json", data)
    (target / "twofold-images" / "images" / "..json").write_bytes(b"{}")
    assert [i.name for i in list_store(str(target)).images] == ["one"]


def test_copy_names_and_skips_a_damaged_manifest(imaged: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    src, target = imaged
    create(str(src), str(target), "two", 3, None, False, P, C)
    path = _manifest(target, "one")
    path.write_bytes(path.read_bytes()[:100])
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    r = copy(str(target), str(offsite), None, P, C)
    assert r.copied == ["two"] and list(r.damaged) == ["one"]
    assert [i.name for i in list_store(str(offsite)).images] == ["two"]


def test_on_ext4_damaged_chunks_are_stored_again_and_the_new_image_restores_exactly(
        tmp_path: Path) -> None:
    """The issue's case on a real file system (its own allocation map gives the extents,
    so cells hold partial pieces): flipped bits in the packs, verify names them, the next
    create stores those chunks again, and its image restores byte for byte."""
    tree = tmp_path / "tree"
    tree.mkdir()
    rng = random.Random(9)
    for i in range(12):
        (tree / f"f{i}").write_bytes(rng.randbytes(300_000) if i % 2 else b"twofold " * 40_000)
    src = blank(tmp_path / "ext4.img", 24 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(src)], check=True)
    target = tmp_path / "drive"
    target.mkdir()
    first = create(str(src), str(target), "one", 3, None, False, P, C)
    assert first.used_bytes < 24 * MiB  # the bitmap was read: not the whole volume
    _flip_packs(target, flips=4, seed=3)
    found = verify(str(target), None, P, C)
    assert found.damages and found.recorded_bad == len(found.bad_ids)
    second = create(str(src), str(target), "two", 3, None, False, P, C)
    assert second.new_chunks == len(found.bad_ids) and second.stored_new_bytes > 0
    out = tmp_path / "two.img"
    restore(str(target), "two", str(out), None, P, C)
    assert out.read_bytes() == src.read_bytes()
    assert verify(str(target), None, P, C).sound
