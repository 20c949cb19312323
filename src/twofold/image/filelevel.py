"""File-level imaging of a mounted read-write file system (docs/DESIGN.md, "Images: live
file systems"): walk the mounted tree without crossing into other mounts, store the files'
data as chunks (large files cut at chunk-size cells, small ones packed into groups), and
the tree's records as chunks; files that change while read are read again."""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from twofold.blobs.objects import StoreError
from twofold.chunks.chunkstore import ChunkStore
from twofold.core.models import Issue
from twofold.core.progress import Progress
from twofold.image.filerecords import (
    BOUNDARY_MASK,
    RECORD_MASK,
    get_bytes,
    groups,
    load_lines,
    path_mark,
    put_bytes,
)
from twofold.image.filewalk import Read, Sink, Tally, Walk, read_files
from twofold.image.manifest import ManifestError


@dataclass
class FilesTaken:
    """What file-level imaging of one file system did: its area document and counts."""

    doc: dict[str, Any]
    issues: list[Issue] = field(default_factory=list)
    file_bytes: int = 0
    new_chunks: int = 0
    reused_chunks: int = 0
    zero_chunks: int = 0


_KIND = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
         stat.S_IFBLK: "b", stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}


def _record(rel: bytes, st: os.stat_result, xattrs: dict[str, str], target: bytes | None
            ) -> dict[str, Any]:
    rec: dict[str, Any] = {"k": _KIND[stat.S_IFMT(st.st_mode)], "m": stat.S_IMODE(st.st_mode),
                           "u": st.st_uid, "g": st.st_gid, "t": st.st_mtime_ns}
    if rec["k"] not in "dl":  # listing a folder or reading a link moves its atime
        rec["a"] = st.st_atime_ns
    put_bytes(rec, "p", rel)
    if rec["k"] == "l":
        put_bytes(rec, "l", target or b"")
    elif rec["k"] in "cb":
        rec["r"] = st.st_rdev
    if xattrs:
        rec["x"] = xattrs
    return rec


def _data_kept(before: _Before, old: dict[str, Any], st: os.stat_result,
               store: ChunkStore) -> bool:
    """True when `old`, the previous image's record of a file, still describes its data:
    inode, size, mtime and ctime unchanged, and its chunks still stored."""
    return old.get("k") == "f" and "d" in old and \
        (old.get("i"), old.get("s"), old.get("t"), old.get("c")) == \
        (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) and before.holds(old, store)


def _unchanged(before: _Before | None, rel: bytes, st: os.stat_result,
               store: ChunkStore) -> dict[str, Any] | None:
    """The previous image's record of `rel` when the file's data is as it was then
    (_data_kept): its data need not be read."""
    got = before.records.get(rel) if before is not None else None
    if got is None:
        return None
    assert before is not None
    return got[0] if _data_kept(before, got[0], st, store) else None


def _as_before(before: _Before, rel: bytes, st: os.stat_result, xattrs: dict[str, str],
               target: bytes | None, store: ChunkStore) -> tuple[dict[str, Any], bytes] | None:
    """The previous image's record of `rel` and its line, when the record made now would
    be the same (a folder, a symlink, or a file with one link whose data is still stored):
    neither built nor encoded again. None for anything else (then the record is built)."""
    got = before.records.get(rel)
    if got is None:
        return None
    old = got[0]
    mode = st.st_mode
    kind = old.get("k")
    if kind != _KIND.get(mode & 0o170000) or old.get("m") != mode & 0o7777 or \
            old.get("u") != st.st_uid or old.get("g") != st.st_gid or \
            old.get("t") != st.st_mtime_ns or old.get("x") != (xattrs or None):
        return None
    if kind == "f":
        if st.st_nlink != 1 or not _data_kept(before, old, st, store):
            return None
        if old.get("a") != st.st_atime_ns:  # read since (relatime): only the atime is new
            line = got[1]
            if not line.startswith(b'{"a":'):
                return None
            # "a" sorts first, so the line is the old one with its first value replaced
            return {**old, "a": st.st_atime_ns}, \
                b'{"a":%d%s' % (st.st_atime_ns, line[line.index(b",", 5):])
    elif kind == "l":
        if get_bytes(old, "l") != (target or b""):
            return None
    elif kind != "d":
        return None  # devices, FIFOs, sockets: rare, built as before
    return got


@dataclass
class _Before:
    """The previous image of the same file system: records by path, chunk lengths."""

    records: dict[bytes, tuple[dict[str, Any], bytes]]  # path -> record, its line
    lengths: dict[bytes, int]
    held: dict[str, bool] = field(default_factory=dict)  # hex id -> still stored

    def holds(self, rec: dict[str, Any], store: ChunkStore) -> bool:
        """True when every chunk of a file's record is still in the store."""
        held = self.held
        for h, _o, _n in rec["d"]:
            if h is not None:
                ok = held.get(h)
                if ok is None:  # asked once per chunk: small files share theirs
                    ok = held[h] = store.has(bytes.fromhex(h))
                if not ok:
                    return False
        return True


def previous(store: ChunkStore, files: dict[str, Any] | None, where: str) -> _Before | None:
    """The previous image's records of this file system (None when there is none, or it
    cannot be read: then every file is read)."""
    if not files:
        return None
    try:
        recs = load_lines(store, files, where)
    except (StoreError, ManifestError):
        return None
    by_path = {get_bytes(r, "p") or b"": (r, line) for r, line in recs}
    return _Before(by_path, {bytes.fromhex(h): n for n, h in files["data"]})


class _Batch:
    """Files read by one task of the pool (many small ones, or one large one)."""

    def __init__(self) -> None:
        self.paths: list[bytes] = []
        self.size = 0
        self.fut: Future[list[Read | None]] | None = None


BATCH_FILES = 64  # small files read by one task
BATCH_BYTES = 1 << 20
WINDOW_BYTES = 64 << 20  # small files' data read ahead of the records, at most
AHEAD = 512
"""Entries a reading thread may have waiting (6,144 on two cores; each holds its record
and, for a small file, its data within WINDOW_BYTES): folders of small files wait on a cold
disk while others compress large ones, so the deeper the overlap the better. 64 took
3.53-3.94 s to image the Debian root, 512 took 3.30-3.78 s (six alternating pairs)."""
TICK = 256  # files between progress reports


def image_files(point: str, params: dict[str, Any], store: ChunkStore, level: int,
                progress: Progress, workers: int, skip: set[tuple[int, int]],
                before: _Before | Callable[[], _Before | None] | None = None,
                graft: dict[bytes, bytes] | None = None
                ) -> FilesTaken:
    """Image the file system mounted at `point` at file level into `store`; `skip`:
    (st_dev, st_ino) of folders left out (the image store's own); `before`: the previous
    image's records, whose files are not read again when unchanged (or what loads them,
    called once the walk has started); `graft`: folders read from elsewhere (see
    filewalk.Walk)."""
    taken = FilesTaken({})
    prior = None if callable(before) else before
    tally = Tally()
    sink = Sink(store, level, tally)
    chunk_size = store.chunk_size
    small = chunk_size // 4
    records: list[dict[str, Any]] = []
    lines: dict[int, bytes] = {}  # records taken over as they were: their lines, by id()
    marks: list[int] = []
    unstable: list[str] = []
    links: dict[tuple[int, int], bytes] = {}
    kept: set[str] = set()  # chunks of files taken over from the previous image
    bundle: list[bytes] = []
    filled = 0  # bytes in `bundle`
    waiting: list[tuple[dict[str, Any], int, int]] = []  # records whose data is in `bundle`
    packing: deque[tuple[Future[bytes | None], list[tuple[dict[str, Any], int, int]]]] = \
        deque()  # bundles being hashed and compressed by the pool
    ticked = [0, 0]  # files and bytes not yet reported

    def report(files: int, nbytes: int, now: bool = False) -> None:
        ticked[0] += files
        ticked[1] += nbytes
        if ticked[0] >= TICK or now:
            progress.advance(files=ticked[0], nbytes=ticked[1])
            ticked[0] = ticked[1] = 0

    def settle(limit: int) -> None:
        while len(packing) > limit:
            fut, recs = packing.popleft()
            cid = fut.result()
            for rec, offset, length in recs:
                rec["d"] = [[cid.hex() if cid else None, offset, length]]

    def close_bundle() -> None:
        nonlocal filled
        if not bundle:
            return
        packing.append((pool.submit(sink.put_joined, list(bundle)), list(waiting)))
        bundle.clear()
        waiting.clear()
        filled = 0
        settle(workers * 2)

    def start(batch: _Batch) -> Future[list[Read | None]]:
        if batch.fut is None:
            batch.fut = pool.submit(read_files, batch.paths, small, chunk_size, sink)
        return batch.fut

    def take(rec: dict[str, Any], rel: bytes, batch: _Batch | None, index: int) -> None:
        nonlocal filled
        if batch is None:
            if "s" in rec:  # unchanged since the previous image
                taken.file_bytes += rec["s"]
                report(1, rec["s"])
        else:
            got = start(batch).result()[index]
            if got is None:  # vanished while imaged: left out, as if deleted just before
                return
            rec.update(m=stat.S_IMODE(got.st.st_mode), u=got.st.st_uid, g=got.st.st_gid,
                       a=got.st.st_atime_ns, t=got.st.st_mtime_ns, c=got.st.st_ctime_ns,
                       i=got.st.st_ino)
            if got.unstable:
                shown = rel.decode("utf-8", "replace")
                unstable.append(shown)
                taken.issues.append(Issue(os.path.join(point.encode(), rel), "unstable",
                                          "kept changing while read; possibly inconsistent"))
            if got.small is not None:
                size = len(got.small)
                if size and filled + size > chunk_size:
                    close_bundle()
                if size:
                    waiting.append((rec, filled, size))
                    bundle.append(got.small)
                    filled += size
                rec["d"] = []
            else:
                rec["d"] = got.refs
                size = sum(r[2] for r in got.refs)
            rec["s"] = size
            taken.file_bytes += size
            report(1, size)
        mark = path_mark(rel)
        records.append(rec)
        marks.append(mark)
        if not mark & BOUNDARY_MASK:
            close_bundle()

    root = os.fsencode(point)
    label_entry = str(params.get("label") or "").encode() if params["type"] == "vfat" else b""
    pending: deque[tuple[dict[str, Any], bytes, _Batch | None, int, int]] = deque()
    held = 0  # bytes of small files in `pending`, read or being read
    batch = _Batch()

    def keep(old: dict[str, Any]) -> None:  # a file's data as in the previous image
        for h, _o, _n in old["d"]:
            if h is not None:
                kept.add(h)
        tally.reused_chunks += 1

    def plan(rec: dict[str, Any], rel: bytes, full: bytes, st: os.stat_result
             ) -> _Batch | None:
        """Where a file's data comes from: the batch that reads it, or None (a hard
        link to a file before it, or unchanged since the previous image)."""
        nonlocal batch
        first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
        if first is not None:
            put_bytes(rec, "h", first)
            return None
        if st.st_nlink > 1:  # inode numbers repeat across btrfs subvolumes
            links[(st.st_dev, st.st_ino)] = rel
        old = _unchanged(prior, rel, st, store)
        if old is not None:
            rec.update(d=old["d"], s=old["s"], c=old["c"], i=old["i"])
            keep(old)
            return None
        if st.st_size >= small or batch.fut is not None or \
                len(batch.paths) >= BATCH_FILES or batch.size >= BATCH_BYTES:
            if batch.paths:
                start(batch)
            batch = _Batch()
        batch.paths.append(full)
        batch.size += st.st_size
        if st.st_size >= small:  # a large file: a task of its own
            start(batch)
        return batch

    def take_first() -> None:
        nonlocal held
        rec, rel, reading, index, size = pending.popleft()
        held -= size
        take(rec, rel, reading, index)

    with Walk(root, skip, graft) as entries, \
            ThreadPoolExecutor(workers, thread_name_prefix="twofold-files") as pool:
        if callable(before):  # loaded while the walk lists the first folders
            prior = before()
        for rel, full, st, xattrs, target in entries:
            if rel == label_entry and stat.S_ISREG(st.st_mode) and st.st_size == 0:
                continue  # fusefat shows a FAT volume label as an empty file in the root
            reading: _Batch | None = None
            same = _as_before(prior, rel, st, xattrs, target, store) \
                if prior is not None else None
            if same is not None:  # as in the previous image: its record and line
                rec, lines[id(rec)] = same
                if rec["k"] == "f":
                    keep(rec)
            else:
                rec = _record(rel, st, xattrs, target)
                if rec["k"] == "f":
                    reading = plan(rec, rel, full, st)
            if reading is None and not pending:  # nothing read ahead of it: in place now
                take(rec, rel, None, 0)
                continue
            size = st.st_size if reading is not None and st.st_size < small else 0
            held += size
            pending.append((rec, rel, reading, len(reading.paths) - 1 if reading else 0, size))
            while len(pending) >= workers * AHEAD or held > WINDOW_BYTES:
                take_first()  # a deep window: walking overlaps reading on a cold disk
        while pending:
            take_first()
        close_bundle()
        settle(0)
    report(0, 0, now=True)
    if prior is not None:
        for h in kept:
            sink.ids.setdefault(bytes.fromhex(h), prior.lengths.get(bytes.fromhex(h), 0))
    meta: list[tuple[int, bytes]] = []
    for piece in groups(records, marks, chunk_size, RECORD_MASK, lines):
        made = sink.put(piece)
        assert made is not None  # records are JSON text, never all zero bytes
        meta.append((len(piece), made))
    metas = {cid for _n, cid in meta}
    data = sorted((cid, n) for cid, n in sink.ids.items() if cid not in metas)
    vfs = os.statvfs(point)
    fs_used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize if vfs.f_blocks else \
        sum(-(-int(r.get("s", 0)) // 4096) * 4096 + 4096 for r in records)  # fusefat: 0 of 0
    taken.new_chunks, taken.reused_chunks, taken.zero_chunks = \
        tally.new_chunks, tally.reused_chunks, tally.zero_chunks
    taken.doc = {"params": params, "entries": len(records), "file_bytes": taken.file_bytes,
                 "fs_used": fs_used,
                 "meta": [[n, cid.hex()] for n, cid in meta],
                 "data": [[n, cid.hex()] for cid, n in data], "unstable": unstable}
    return taken
