"""The content-addressed chunk store on an ObjectStore: packs (optionally in volumes),
the index of chunk id → pack location, rebuilt from the packs' own indexes when missing
or damaged, and the copies found damaged (never used again). How one chunk is named and
stored (keyed, compressed, sealed) is its base class, Codec (chunks/codec.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

from twofold.blobs.objects import ObjectMissing, ObjectStore, StoreError
from twofold.chunks.codec import Codec
from twofold.chunks.freeing import collect
from twofold.chunks.indexfiles import (
    BAD_DIR,
    INDEX_DIR,
    STORE_FILE,
    IndexDamaged,
    bad_doc,
    content_name,
    index_doc,
    is_pack_name,
    marker_doc,
    parse_bad_file,
    parse_index_file,
    parse_marker,
)
from twofold.chunks.packs import (
    ENTRY,
    FOOTER,
    PackDamaged,
    PackEntry,
    pack_name,
    parse_footer,
)
from twofold.fsinfo.volume import DriveId
from twofold.vault.cipher import SealDamaged
from twofold.vault.objects import StoreLocked, vault_of

CHUNK_SIZE = 1 << 20
PACK_SIZE = 32 << 20
MIN_VOLUME = 16 << 20


class ChunkDamaged(StoreError):
    """A chunk's stored bytes do not decompress to data with its id."""


@dataclass(frozen=True)
class Location:
    """Where a chunk is stored."""

    pack: str
    offset: int
    length: int
    plain_length: int


def _valid_chunk_size(size: object) -> int:
    """The chunk size when it is a power of two from 64 KiB to 16 MiB; else StoreError."""
    if not isinstance(size, int) or size & (size - 1) or not 1 << 16 <= size <= 1 << 24:
        raise StoreError(f"chunk size {size!r} is not a power of two from 64 KiB to 16 MiB")
    return size


def volume_of(pack: str) -> str:
    """The volume folder of a pack name ("vol-0003"), or "" outside volumes."""
    head = pack.split("/", 1)[0]
    return head if head.startswith("vol-") else ""


class ChunkStore(Codec):
    """Chunks by id. Writers add chunks, then `flush` and `commit_index`; readers `load`."""

    def __init__(self, objects: ObjectStore, volume_size: int | None = None,
                 pack_size: int = PACK_SIZE, chunk_size: int = CHUNK_SIZE) -> None:
        if volume_size is not None and volume_size < MIN_VOLUME:
            raise StoreError(f"a volume must hold at least {MIN_VOLUME >> 20} MiB")
        self.objects = objects
        super().__init__(vault_of(objects))
        self.chunk_size = _valid_chunk_size(chunk_size)
        self.volume_size = volume_size
        self.pack_limit = min(pack_size, volume_size or pack_size)
        self.index: dict[bytes, Location] = {}
        self.drive: DriveId | None = None  # the drive store.json names (local stores)
        self.packs: dict[str, list[PackEntry]] = {}
        self.index_files: list[str] = []
        self.bad_files: list[str] = []
        self.indexed_by: dict[str, list[str]] = {}  # pack -> the sound index files naming it
        self.damaged_files: dict[str, str] = {}  # index or bad-list object -> problem
        self.damaged_packs: dict[str, str] = {}  # pack whose own index is unreadable
        self.bad: set[tuple[bytes, str]] = set()  # (chunk id, pack): a copy found damaged
        self.found_bad: set[tuple[bytes, str]] = set()  # found by this session's loads
        self._bad_lock = threading.Lock()
        self._builder = self.new_builder()
        self._session_packs: list[str] = []
        self._volume_use: dict[str, int] = {}
        self._writer: ThreadPoolExecutor | None = None
        self._writes: list[Future[bool]] = []
        self.new_chunks = 0
        self.new_bytes = 0  # stored (compressed) bytes written by this session

    # -- opening -----------------------------------------------------------------------

    def init(self, drive: DriveId | None = None) -> None:
        """Make the store's marker object if the store is new (naming the `drive` it is
        made on); check it otherwise."""
        if self.objects.put_once(STORE_FILE, marker_doc(self.chunk_size, drive,
                                                        self.vault is not None)):
            self.drive = drive
        else:
            self.check()

    def check(self) -> None:
        """StoreError unless the folder holds an image store of a version we read."""
        try:
            raw = self.objects.get(STORE_FILE)
        except ObjectMissing:
            raise StoreError(f"no image store at {self.objects.describe()}",
                             "create an image there first (twofold image create)") from None
        where = self.objects.describe()
        marker = parse_marker(raw, where)
        if "encryption" in marker and self.vault is None:
            raise StoreLocked(f"the image store at {where} is encrypted",
                              "give its passphrase in TWOFOLD_PASSPHRASE, or a file holding "
                              "it with --key-file (or type it at the prompt)")
        if "encryption" not in marker and self.vault is not None:
            raise StoreError(f"the image store at {where} is not encrypted, yet holds keys/",
                             "remove the folder keys/ there if no encrypted store was meant")
        self.chunk_size = _valid_chunk_size(marker.get("chunk_size"))
        self.drive = DriveId.from_json(marker.get("drive"))

    def drive_now(self) -> DriveId | None:
        """The drive id store.json holds now (None when it cannot be read)."""
        try:
            raw = self.objects.get(STORE_FILE)
            return DriveId.from_json(parse_marker(raw, self.objects.describe()).get("drive"))
        except StoreError:
            return None

    def remake_marker(self, chunk_size: int) -> None:
        """Replace a damaged store.json (only under the exclusive lock)."""
        self.chunk_size = _valid_chunk_size(chunk_size)
        self.objects.delete(STORE_FILE)
        self.objects.put_once(STORE_FILE, marker_doc(self.chunk_size, self.drive,
                                                     self.vault is not None))

    def load_index(self, repair: bool = False) -> list[str]:
        """Read the index files and bad-chunk lists, then the footers of packs no sound
        index file covers; with `repair`, write an index file for those. Damaged index
        files and lists are named in `damaged_files` and not used. Returns the packs that
        were recovered."""
        listed = self.objects.list()
        pack_sizes = {o.name: o.size for o in listed if is_pack_name(o.name)}
        for name, size in pack_sizes.items():
            vol = volume_of(name)
            self._volume_use[vol] = self._volume_use.get(vol, 0) + size
        self.index_files = [o.name for o in listed if o.name.startswith(INDEX_DIR)]
        self.bad_files = bad_files = [o.name for o in listed if o.name.startswith(BAD_DIR)]
        with ThreadPoolExecutor(self.objects.writers, thread_name_prefix="twofold-idx") as pool:
            docs = list(pool.map(self._get_doc, self.index_files + bad_files))
        for name, raw in zip(bad_files, docs[len(self.index_files):], strict=True):
            try:
                self.bad |= parse_bad_file(name, raw)
            except IndexDamaged as err:
                self.damaged_files[name] = err.message
        for name, raw in zip(self.index_files, docs, strict=False):
            try:
                packs = parse_index_file(name, raw)
            except IndexDamaged as err:
                self.damaged_files[name] = err.message  # its packs are read below
                continue
            for pack, entries in packs.items():
                if pack in pack_sizes:
                    self.indexed_by.setdefault(pack, []).append(name)
                    self._add_pack(pack, entries)
        missing = [p for p in pack_sizes if p not in self.packs]
        recovered = []
        for pack in missing:
            try:
                self._add_pack(pack, self.read_pack_index(pack, pack_sizes[pack]))
            except PackDamaged as err:
                self.damaged_packs[pack] = err.message
                continue  # verify names the images that needed it
            recovered.append(pack)
        if repair and recovered:
            self._write_index(recovered)
        return recovered

    def _get_doc(self, name: str) -> bytes:
        """An index file or bad-chunk list; in an encrypted store, one that fails its
        authentication reads as damaged (b"" fails every parser)."""
        try:
            return self.objects.get(name)
        except SealDamaged:
            return b""

    def read_pack_index(self, pack: str, size: int) -> list[PackEntry]:
        """The index a pack carries at its end."""
        tail = self.objects.get_range(pack, max(0, size - FOOTER.size), FOOTER.size)
        offset, count, crc = parse_footer(tail, size, pack, self.overhead)
        raw = self.objects.get_range(pack, offset, count * ENTRY.size + self.overhead)
        return self.open_pack_index(raw, count, crc, pack)

    def _add_pack(self, pack: str, entries: list[PackEntry]) -> None:
        self.packs[pack] = entries
        for e in entries:
            if (e.chunk_id, pack) not in self.bad:
                self.index.setdefault(e.chunk_id, Location(pack, e.offset, e.length,
                                                           e.plain_length))

    # -- damaged copies ----------------------------------------------------------------

    def forget(self, cid: bytes, pack: str) -> None:
        """Never use the copy of `cid` in `pack` again in this session (another copy, if
        the store holds one, takes its place)."""
        with self._bad_lock:
            self.found_bad.add((cid, pack))
            self.bad.add((cid, pack))
            loc = self.index.get(cid)
            if loc is None or loc.pack != pack:
                return
            del self.index[cid]
            for other, entries in self.packs.items():
                for e in entries:
                    if e.chunk_id == cid and (cid, other) not in self.bad:
                        self.index[cid] = Location(other, e.offset, e.length, e.plain_length)
                        return

    def known_bad(self, cid: bytes) -> bool:
        """True when a copy of `cid` was found damaged (and is not used)."""
        return any(c == cid for c, _ in self.bad)

    def record_bad(self, now_ns: int | None = None) -> int:
        """Write the damaged copies found by this session to a bad-chunk list (bad/), so
        that no later run reuses them; returns how many were recorded."""
        with self._bad_lock:
            pairs, self.found_bad = set(self.found_bad), set()
        if not pairs:
            return 0
        data = bad_doc(pairs, now_ns if now_ns is not None else time.time_ns())
        self.objects.put_once(content_name(BAD_DIR, data), data)
        return len(pairs)

    # -- writing -----------------------------------------------------------------------

    def has(self, cid: bytes) -> bool:
        """True when the store (or the pack being built) holds the chunk."""
        return cid in self.index or cid in self._builder.ids

    def add(self, cid: bytes, stored: bytes, plain_length: int) -> bool:
        """Queue a compressed chunk for the current pack; False when already stored."""
        if self.has(cid):
            return False
        if self._builder.entries and \
                self._builder.finished_size(1) + len(stored) > self.pack_limit:
            self.flush()
        self._builder.add(cid, stored, plain_length)
        self.new_chunks += 1
        return True

    def flush(self) -> str | None:
        """Write the pack being built (if any chunk is in it); returns its name."""
        builder = self._builder
        if not builder.entries:
            return None
        data = builder.build()
        name = pack_name(data, self._volume_for(len(data)))
        writers = self.objects.writers
        while len(self._writes) >= writers + 1:  # packs in memory waiting for the store
            self._writes.pop(0).result()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(writers, thread_name_prefix="twofold-pack")
        self._writes.append(self._writer.submit(self.objects.put_once, name, data))
        vol = volume_of(name)
        self._volume_use[vol] = self._volume_use.get(vol, 0) + len(data)
        self._add_pack(name, builder.entries)
        self._session_packs.append(name)
        self.new_bytes += len(data)
        self._builder = self.new_builder()
        return name

    def _volume_for(self, size: int) -> str:
        if self.volume_size is None:
            return ""
        used = [v for v in self._volume_use if v]
        number = max((int(v[4:]) for v in used), default=1)
        if self._volume_use.get(f"vol-{number:04d}", 0) + size > self.volume_size:
            number += 1
        return f"vol-{number:04d}"

    def replace_pack(self, old: str, new: str, entries: list[PackEntry]) -> None:
        """`new` (stored) holds what `old` held: chunks are found there from now on."""
        self.drop_pack(old)
        self._add_pack(new, entries)

    def wait_writes(self) -> None:
        """Wait until every pack handed to the writer thread is stored (or raise its error)."""
        while self._writes:
            self._writes.pop(0).result()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None

    def commit_index(self) -> None:
        """Write one index file for the packs this session wrote, once they are stored."""
        self.flush()
        self.wait_writes()
        if self._session_packs:
            self._write_index(self._session_packs)
            self._session_packs = []

    def reindex(self, packs: dict[str, list[PackEntry]], keep: list[str]) -> str:
        """Write one index file for `packs` (their own indexes, as read), then remove
        every other index file but `keep` (only under the exclusive lock)."""
        for gone in self.index_files:  # first: the new one may have a damaged one's name
            if gone not in keep:
                self.objects.delete(gone)
        self.packs.update(packs)
        self.index_files = list(keep)
        return self._write_index(sorted(packs))

    def _write_index(self, packs: list[str]) -> str:
        data = index_doc({p: self.packs[p] for p in packs})
        name = content_name(INDEX_DIR, data)
        if not self.objects.put_once(name, data) and name in self.damaged_files:
            self.objects.delete(name)  # a damaged copy of these very bytes
            self.objects.put_once(name, data)
            del self.damaged_files[name]
        self.index_files.append(name)
        return name

    @property
    def building_bytes(self) -> int:
        """Stored bytes this session has written or queued, the pack being built included."""
        return self.new_bytes + (self._builder.size if self._builder.entries else 0)

    def drop_session(self) -> int:
        """Give up this session's packs: wait for (and ignore the errors of) queued writes,
        then delete every pack it wrote; returns how many. Only when no other writer can
        have seen them (a create that stops for want of space)."""
        self._builder = self.new_builder()
        while self._writes:
            with suppress(StoreError):
                self._writes.pop(0).result()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        dropped = list(self._session_packs)
        for name in dropped:
            with suppress(StoreError):
                self.objects.delete(name)
            for e in self.packs.pop(name, []):
                if (loc := self.index.get(e.chunk_id)) is not None and loc.pack == name:
                    del self.index[e.chunk_id]
        self._session_packs = []
        return len(dropped)

    # -- reading -----------------------------------------------------------------------

    def location(self, cid: bytes) -> Location | None:
        """Where a chunk is, or None when the store does not hold it."""
        return self.index.get(cid)

    def load(self, cid: bytes) -> bytes:
        """The plain data of a chunk, checked against its id; ChunkDamaged otherwise."""
        loc = self.index.get(cid)
        if loc is None:
            if self.known_bad(cid):
                raise ChunkDamaged(f"chunk {cid.hex()} was found damaged before (bad/) and "
                                   "the store holds no good copy")
            raise ObjectMissing(f"chunk {cid.hex()} is not in the store")
        stored = self.objects.get_range(loc.pack, loc.offset, loc.length)
        try:
            data = self.unpack(cid, stored, loc.plain_length)
        except PackDamaged:
            self.forget(cid, loc.pack)
            raise ChunkDamaged(f"chunk {cid.hex()} in {loc.pack} does not decompress") from None
        if len(data) != loc.plain_length or self.id_of(data) != cid:
            self.forget(cid, loc.pack)
            raise ChunkDamaged(f"chunk {cid.hex()} in {loc.pack} fails its hash check")
        return data

    # -- freeing (chunks/freeing.py) ----------------------------------------------------

    def collect(self, referenced: set[bytes], room: int | None = None) -> tuple[int, int]:
        """Drop packs holding no referenced chunk and rewrite packs holding some
        unreferenced ones (chunks/freeing.py). Returns (packs removed or rewritten, bytes
        freed)."""
        return collect(self, referenced, room)

    def drop_pack(self, pack: str) -> list[PackEntry]:
        """Forget a pack (its chunks are found elsewhere or not at all); its entries."""
        entries = self.packs.pop(pack)
        for e in entries:
            if (loc := self.index.get(e.chunk_id)) is not None and loc.pack == pack:
                del self.index[e.chunk_id]
        return entries

    def add_pack(self, pack: str, entries: list[PackEntry]) -> None:
        """Know a stored pack and its entries (copies listed as bad are not indexed)."""
        self._add_pack(pack, entries)

    def settle(self) -> None:
        """What this session wrote is kept: a later drop_session leaves it alone."""
        self._session_packs = []

    def write_index(self, packs: list[str]) -> str:
        """Write one index file for `packs`; its name."""
        return self._write_index(packs)
