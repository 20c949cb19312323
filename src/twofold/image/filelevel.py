"""File-level imaging of a mounted read-write file system (docs/DESIGN.md, "Images: live
file systems"): walk the mounted tree without crossing into other mounts, store the files'
data as chunks (large files cut at chunk-size cells, small ones packed into groups), and
the tree's records as chunks; files that change while read are read again."""

from __future__ import annotations

import os
import stat
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from twofold.blobs.objects import StoreError
from twofold.chunks.chunkstore import ChunkStore
from twofold.core.models import Issue
from twofold.core.progress import Progress
from twofold.image.filerecords import (
    RECORD_MASK,
    ends_group,
    get_bytes,
    groups,
    load_records,
    put_bytes,
)
from twofold.image.manifest import ManifestError

TRIES = 3  # reads of a file that keeps changing before it is listed as inconsistent
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOATIME", 0)


@dataclass
class FilesTaken:
    """What file-level imaging of one file system did: its area document and counts."""

    doc: dict[str, Any]
    issues: list[Issue] = field(default_factory=list)
    file_bytes: int = 0
    new_chunks: int = 0
    reused_chunks: int = 0
    zero_chunks: int = 0


@dataclass
class _Read:
    st: os.stat_result
    refs: list[list[Any]]  # [id hex or None, offset in chunk, length] (large files)
    small: bytes | None  # the whole data of a small file, packed by the main thread
    unstable: bool


class _Sink:
    """The chunk store shared by the reading threads (ChunkStore itself is not)."""

    def __init__(self, store: ChunkStore, level: int, taken: FilesTaken) -> None:
        self.store, self.level, self.taken = store, level, taken
        self.lock = threading.Lock()
        self.ids: dict[bytes, int] = {}  # every chunk this file system needs: its length

    def put(self, data: bytes) -> bytes | None:
        """Store `data` as a chunk unless held already; its id (None when all zero)."""
        if not data.strip(b"\0"):
            with self.lock:
                self.taken.zero_chunks += 1
            return None
        cid = self.store.id_of(data)
        stored = None if self.store.has(cid) else self.store.stored_form(cid, data, self.level)
        with self.lock:
            self.ids[cid] = len(data)
            if stored is not None and self.store.add(cid, stored, len(data)):
                self.taken.new_chunks += 1
            else:
                self.taken.reused_chunks += 1
        return cid


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == \
        (b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def _read_file(path: bytes, small: int, chunk_size: int, sink: _Sink) -> _Read | None:
    """A regular file's data (None when it vanished or is no longer a regular file),
    read again while its size, times or inode change under the read."""
    for attempt in range(TRIES):
        try:
            fd = os.open(path, _OPEN)
        except FileNotFoundError:
            return None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return None
            refs: list[list[Any]] = []
            data: bytes | None = None
            end = before.st_size  # a file that grows meanwhile is read again, not forever
            if end < small:
                parts = []
                got = 0
                while got < end and (part := os.pread(fd, end - got, got)):
                    parts.append(part)
                    got += len(part)
                data = b"".join(parts)
            else:
                offset = 0
                while offset < end and \
                        (piece := os.pread(fd, min(chunk_size, end - offset), offset)):
                    cid = sink.put(piece)
                    refs.append([cid.hex() if cid else None, 0, len(piece)])
                    offset += len(piece)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if _same(before, after) or attempt == TRIES - 1:
            return _Read(after, refs, data, not _same(before, after))
    raise AssertionError("unreachable")


def _xattrs(path: bytes) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}  # no xattrs on this file system (FAT through FUSE)
    out = {}
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False).hex()
        except OSError:
            continue
    return out


Entry = tuple[bytes, os.stat_result, dict[str, str]]  # name, lstat, xattrs


def _scan(full: bytes) -> list[Entry]:
    """A folder's entries with their lstat and xattrs, by name (those gone meanwhile left
    out)."""
    try:
        names = sorted(os.listdir(full))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            child = os.path.join(full, name)
            out.append((name, os.lstat(child), _xattrs(child)))
        except FileNotFoundError:
            continue
    return out


def _walk(root: bytes, skip: set[tuple[int, int]], graft: dict[bytes, bytes] | None = None
          ) -> Iterator[tuple[bytes, bytes, os.stat_result, dict[str, str]]]:
    """(relative path, full path, lstat, xattrs) of everything under `root`, parents first,
    names sorted; folders on another device (mounts) are listed, never entered, except
    those `graft` names: their tree is read from the folder it gives (a snapshot of a
    btrfs subvolume in place of its stub). Folders are listed by a few threads ahead of
    the walk (a cold tree waits on the disk)."""
    top = os.lstat(root)
    yield b"", root, top, _xattrs(root)
    with ThreadPoolExecutor(4, thread_name_prefix="twofold-walk") as pool:
        stack = [(b"", root, top.st_dev, pool.submit(_scan, root))]
        while stack:
            rel, full, dev, listing = stack.pop()
            below = []
            for name, seen, seen_x in listing.result():
                if (seen.st_dev, seen.st_ino) in skip:
                    continue
                child = os.path.join(full, name)
                crel = rel + b"/" + name if rel else name
                other = graft.get(crel) if graft else None
                st, xattrs = (os.lstat(other), _xattrs(other)) if other else (seen, seen_x)
                child = other or child
                yield crel, child, st, xattrs
                if stat.S_ISDIR(st.st_mode) and (st.st_dev == dev or other is not None):
                    below.append((crel, child, st.st_dev, pool.submit(_scan, child)))
            stack.extend(reversed(below))  # depth first, in name order


_KIND = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
         stat.S_IFBLK: "b", stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}


def _record(rel: bytes, full: bytes, st: os.stat_result, xattrs: dict[str, str]
            ) -> dict[str, Any]:
    rec: dict[str, Any] = {"k": _KIND[stat.S_IFMT(st.st_mode)], "m": stat.S_IMODE(st.st_mode),
                           "u": st.st_uid, "g": st.st_gid, "t": st.st_mtime_ns}
    if rec["k"] not in "dl":  # listing a folder or reading a link moves its atime
        rec["a"] = st.st_atime_ns
    put_bytes(rec, "p", rel)
    if rec["k"] == "l":
        put_bytes(rec, "l", os.readlink(full))
    elif rec["k"] in "cb":
        rec["r"] = st.st_rdev
    if xattrs:
        rec["x"] = xattrs
    return rec


def _unchanged(before: _Before | None, rel: bytes, st: os.stat_result,
               store: ChunkStore) -> dict[str, Any] | None:
    """The previous image's record of `rel` when the file is as it was then (inode, size,
    mtime and ctime) and its chunks are still stored: its data need not be read."""
    old = before.records.get(rel) if before is not None else None
    if old is None or old.get("k") != "f" or "d" not in old or \
            (old.get("i"), old.get("s"), old.get("t"), old.get("c")) != \
            (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns):
        return None
    ids = [bytes.fromhex(h) for h, _o, _n in old["d"] if h is not None]
    return old if all(store.has(i) for i in ids) else None


@dataclass
class _Before:
    """The previous image of the same file system: records by path, chunk lengths."""

    records: dict[bytes, dict[str, Any]]
    lengths: dict[bytes, int]


def previous(store: ChunkStore, files: dict[str, Any] | None, where: str) -> _Before | None:
    """The previous image's records of this file system (None when there is none, or it
    cannot be read: then every file is read)."""
    if not files:
        return None
    try:
        recs = load_records(store, files, where)
    except (StoreError, ManifestError):
        return None
    by_path = {get_bytes(r, "p") or b"": r for r in recs}
    return _Before(by_path, {bytes.fromhex(h): n for n, h in files["data"]})


def image_files(point: str, params: dict[str, Any], store: ChunkStore, level: int,
                progress: Progress, workers: int, skip: set[tuple[int, int]],
                before: _Before | None = None, graft: dict[bytes, bytes] | None = None
                ) -> FilesTaken:
    """Image the file system mounted at `point` at file level into `store`; `skip`:
    (st_dev, st_ino) of folders left out (the image store's own); `before`: the previous
    image's records, whose files are not read again when unchanged; `graft`: folders
    read from elsewhere (see _walk)."""
    taken = FilesTaken({})
    sink = _Sink(store, level, taken)
    chunk_size = store.chunk_size
    small = chunk_size // 4
    records: list[dict[str, Any]] = []
    paths: list[bytes] = []
    unstable: list[str] = []
    links: dict[tuple[int, int], bytes] = {}
    bundle: list[bytes] = []
    filled = 0  # bytes in `bundle`
    waiting: list[tuple[dict[str, Any], int, int]] = []  # records whose data is in `bundle`
    packing: deque[tuple[Future[bytes | None], list[tuple[dict[str, Any], int, int]]]] = \
        deque()  # bundles being hashed and compressed by the pool

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
        packing.append((pool.submit(sink.put, b"".join(bundle)), list(waiting)))
        bundle.clear()
        waiting.clear()
        filled = 0
        settle(workers * 2)

    def take(rec: dict[str, Any], rel: bytes, fut: Future[_Read | None] | None) -> None:
        nonlocal filled
        got = fut.result() if fut is not None else None
        if fut is None and "s" in rec:  # unchanged since the previous image
            taken.file_bytes += rec["s"]
            progress.advance(files=1, nbytes=rec["s"])
        if fut is not None:
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
            progress.advance(files=1, nbytes=size)
        records.append(rec)
        paths.append(rel)
        if ends_group(rel):
            close_bundle()

    root = os.fsencode(point)
    label_entry = str(params.get("label") or "").encode() if params["type"] == "vfat" else b""
    pending: deque[tuple[dict[str, Any], bytes, Future[_Read | None] | None]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="twofold-files") as pool:
        for rel, full, st, xattrs in _walk(root, skip, graft):
            if rel == label_entry and stat.S_ISREG(st.st_mode) and st.st_size == 0:
                continue  # fusefat shows a FAT volume label as an empty file in the root
            rec = _record(rel, full, st, xattrs)
            fut = None
            if rec["k"] == "f":
                first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
                if first is not None:
                    put_bytes(rec, "h", first)
                else:
                    if st.st_nlink > 1:  # inode numbers repeat across btrfs subvolumes
                        links[(st.st_dev, st.st_ino)] = rel
                    old = _unchanged(before, rel, st, store)
                    if old is not None and before is not None:
                        rec.update(d=old["d"], s=old["s"], c=old["c"], i=old["i"])
                        for h, _o, _n in old["d"]:
                            if h is not None:
                                sink.ids[bytes.fromhex(h)] = \
                                    before.lengths.get(bytes.fromhex(h), 0)
                        taken.reused_chunks += 1
                    else:
                        fut = pool.submit(_read_file, full, small, chunk_size, sink)
            pending.append((rec, rel, fut))
            if len(pending) >= workers * 32:  # a deep window: walking overlaps reading
                take(*pending.popleft())
        while pending:
            take(*pending.popleft())
        close_bundle()
        settle(0)
    meta: list[tuple[int, bytes]] = []
    for piece in groups(records, paths, chunk_size, RECORD_MASK):
        made = sink.put(piece)
        assert made is not None  # records are JSON text, never all zero bytes
        meta.append((len(piece), made))
    metas = {cid for _n, cid in meta}
    data = sorted((cid, n) for cid, n in sink.ids.items() if cid not in metas)
    vfs = os.statvfs(point)
    fs_used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize if vfs.f_blocks else \
        sum(-(-int(r.get("s", 0)) // 4096) * 4096 + 4096 for r in records)  # fusefat: 0 of 0
    taken.doc = {"params": params, "entries": len(records), "file_bytes": taken.file_bytes,
                 "fs_used": fs_used,
                 "meta": [[n, cid.hex()] for n, cid in meta],
                 "data": [[n, cid.hex()] for cid, n in data], "unstable": unstable}
    return taken
