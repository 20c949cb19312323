"""Property tests of the image store's readers (hypothesis): arbitrary or mutated bytes
given to the manifest, pack, index-file, bad-list, store.json and checksum readers give
their own clear error (a TwofoldError subclass), never another exception; a changed byte
in a sealed document is always caught; a store whose objects hold garbage opens read-only
without writing anything."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twofold.blobs.objects import LocalObjects, StoreError
from twofold.chunks.chunkstore import ChunkStore
from twofold.chunks.indexfiles import (
    IndexDamaged,
    bad_doc,
    index_doc,
    parse_bad_file,
    parse_index_file,
    parse_marker,
)
from twofold.chunks.packs import (
    ENTRY,
    FOOTER,
    PackBuilder,
    PackDamaged,
    PackEntry,
    compress,
    parse_footer,
    parse_index,
)
from twofold.chunks.sealed import SealBroken, seal, unseal
from twofold.core.errors import TwofoldError
from twofold.image.manifest import ManifestError, chunk_spans, parse_manifest

GOLDEN = Path(__file__).parent / "golden"
MANIFEST_V2 = (GOLDEN / "manifest-v2.json").read_bytes()
MANIFEST_V1 = (GOLDEN / "manifest-v1.json").read_bytes()
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
PACK = "packs/ab/ab" + "0" * 62 + ".pack"


def _index_file() -> tuple[str, bytes]:
    data = index_doc({PACK: [PackEntry(b"\1" * 32, 8, 10, 20), PackEntry(b"\2" * 32, 18, 5, 9)]})
    return f"index/{blake3.blake3(data).hexdigest()}.json", data


def _flip(data: bytes, at: int, mask: int) -> bytes:
    at %= len(data)
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1:]


@FUZZ
@given(st.binary(max_size=2000))
def test_manifest_reader_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        parse_manifest(data, "fuzz")


@FUZZ
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_changed_byte_of_a_sealed_manifest_is_caught(at: int, mask: int) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(_flip(MANIFEST_V2, at, mask), "fuzz")


@FUZZ
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_a_changed_old_manifest_is_caught_or_still_sensible(at: int, mask: int) -> None:
    """Version 1 has no checksum: a change is either refused or gives an image whose
    extents and chunks still agree (what a checksum alone can catch)."""
    try:
        m = parse_manifest(_flip(MANIFEST_V1, at, mask), "fuzz")
    except ManifestError:
        return
    for area in m.areas:
        assert all(o >= 0 and o + n <= area.size for o, n in area.extents)
        list(chunk_spans(area, m.chunk_size))


_ints = st.integers(min_value=-5, max_value=40 << 20)
_area = st.fixed_dictionaries({
    "role": st.sampled_from(["disk", "partition", "volume", "x"]),
    "start": _ints, "size": _ints, "number": st.one_of(st.none(), st.integers(0, 9)),
    "extents": st.lists(st.tuples(_ints, _ints), max_size=6),
    "chunks": st.lists(st.tuples(st.integers(-1, 40), _ints,
                                 st.one_of(st.none(), st.just("ab" * 32))), max_size=6),
})


@FUZZ
@given(st.lists(_area, max_size=3), _ints, st.sampled_from([1 << 20, 1 << 16, 3, 0]),
       st.sampled_from(["one", "../x", ""]))
def test_crafted_sealed_manifests_are_refused_or_sensible(
        areas: list[dict[str, Any]], size: int, chunk_size: int, name: str) -> None:
    doc = {"format": "twofold-image", "version": 2, "name": name, "created_ns": 1,
           "source": "/dev/x", "kind": "disk", "size": size, "chunk_size": chunk_size,
           "table": None, "stats": {}, "areas": areas}
    try:
        m = parse_manifest(seal(doc), "crafted", "one")
    except ManifestError:
        return
    spans = []
    for area in m.areas:
        assert area.start >= 0 and area.start + area.size <= m.size
        for o, n in area.extents:
            assert o >= 0 and n > 0 and o + n <= area.size
            spans.append((area.start + o, n))
        list(chunk_spans(area, m.chunk_size))
    spans.sort()
    assert all(a + n <= b for (a, n), (b, _) in itertools.pairwise(spans))


@FUZZ
@given(st.binary(max_size=600))
def test_unseal_on_arbitrary_bytes(data: bytes) -> None:
    try:
        unseal(b'{"checksum":"' + data)
        unseal(data)
    except SealBroken:
        pass


@FUZZ
@given(st.binary(max_size=400), st.integers(0, 1 << 20), st.integers(0, 100))
def test_pack_footer_and_index_readers(data: bytes, size: int, count: int) -> None:
    try:
        _offset, n, crc = parse_footer(data, size, "fuzz")
        parse_index(data, n, crc, "fuzz")
    except PackDamaged:
        pass
    with contextlib.suppress(PackDamaged):
        parse_index(data, count, 0, "fuzz")


@FUZZ
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_changed_byte_of_a_pack_index_is_caught(at: int, mask: int) -> None:
    builder = PackBuilder()
    builder.add(b"\1" * 32, compress(b"a" * 100, 1), 100)
    builder.add(b"\2" * 32, compress(b"b" * 50, 1), 50)
    pack = builder.build()
    tail_start = len(pack) - 2 * ENTRY.size - FOOTER.size
    changed = _flip(pack, tail_start + at % (len(pack) - tail_start), mask)
    with pytest.raises(PackDamaged):
        offset, n, crc = parse_footer(changed[-FOOTER.size:], len(changed), "fuzz")
        parse_index(changed[offset:offset + n * ENTRY.size], n, crc, "fuzz")


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["index/", "bad/"]))
def test_index_and_bad_list_readers_on_arbitrary_bytes(data: bytes, folder: str) -> None:
    name = f"{folder}{blake3.blake3(data).hexdigest()}.json"  # named rightly: parsed
    with contextlib.suppress(IndexDamaged):
        (parse_index_file if folder == "index/" else parse_bad_file)(name, data)


@FUZZ
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_changed_byte_of_an_index_file_is_caught(at: int, mask: int) -> None:
    name, data = _index_file()
    with pytest.raises(IndexDamaged):
        parse_index_file(name, _flip(data, at, mask))


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=70),
                    lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20))
def test_crafted_sealed_index_files_and_bad_lists(packs: object) -> None:
    for folder, doc in (("index/", {"version": 2, "packs": packs}),
                        ("bad/", {"version": 1, "chunks": packs})):
        data = seal(doc)
        with contextlib.suppress(IndexDamaged):
            (parse_index_file if folder == "index/" else parse_bad_file)(
                f"{folder}{blake3.blake3(data).hexdigest()}.json", data)


@FUZZ
@given(st.binary(max_size=300))
def test_store_marker_reader(data: bytes) -> None:
    try:
        parse_marker(data, "fuzz")
        parse_marker(seal({"format": "twofold-image-store", "version": 2,
                           "chunk_size": data.decode("latin-1")}), "fuzz")
    except StoreError:
        pass


def _tree(root: str) -> dict[str, bytes]:
    out = {}
    for folder, _dirs, files in os.walk(root):
        for f in files:
            path = os.path.join(folder, f)
            with open(path, "rb") as fh:
                out[path] = fh.read()
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.binary(min_size=1, max_size=200),
       st.binary(max_size=200), st.binary(max_size=200))
def test_a_store_of_garbage_opens_read_only_without_writing(
        index: bytes, pack_tail: bytes, marker: bytes, bad: bytes) -> None:
    with tempfile.TemporaryDirectory() as root:
        objects = LocalObjects(root)
        objects.put_once("store.json", marker)
        objects.put_once(f"index/{blake3.blake3(index).hexdigest()}.json", index)
        objects.put_once("index/" + "0" * 64 + ".json", index)
        objects.put_once(f"bad/{blake3.blake3(bad).hexdigest()}.json", bad)
        objects.put_once(PACK, b"TFPACK01" + pack_tail)
        objects.put_once("images/x.json", index)
        before = _tree(root)
        store = ChunkStore(objects)
        with contextlib.suppress(StoreError):
            store.check()
        try:
            store.load_index(repair=False)
        except TwofoldError as err:  # pragma: no cover - the property under test
            raise AssertionError(f"load_index raised {err!r}") from err
        assert PACK in store.damaged_packs or PACK in store.packs
        assert _tree(root) == before


def test_bad_list_round_trip() -> None:
    pairs = {(b"\3" * 32, PACK)}
    data = bad_doc(pairs, 5)
    assert parse_bad_file(f"bad/{blake3.blake3(data).hexdigest()}.json", data) == pairs
    assert json.loads(data)["found_ns"] == 5


def test_atheris_harness_finds_no_crash() -> None:
    """A short coverage-guided run (libFuzzer through atheris) of all the readers."""
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    harness = Path(__file__).with_name("fuzz_image_formats.py")
    with tempfile.TemporaryDirectory() as corpus:
        for i, seed in enumerate((MANIFEST_V2, MANIFEST_V1, _index_file()[1])):
            Path(corpus, f"seed{i}").write_bytes(seed)
        run = subprocess.run([sys.executable, str(harness), "-runs=3000", "-max_len=4096",
                              "-seed=15", corpus], capture_output=True, text=True,
                             timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done 3000 runs" in run.stderr
