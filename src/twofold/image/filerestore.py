"""Restore of a file-level area: make its file system anew with the recorded parameters,
mount it, write every record back (files, folders, links, devices, owners, modes, xattrs,
times; every path checked, nothing followed), unmount, and check it with its fsck."""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any

from twofold.blobs.objects import StoreError
from twofold.chunks.chunkstore import ChunkStore
from twofold.chunks.workers import WORKERS
from twofold.core.progress import Progress
from twofold.fsinfo.btrfs import devices_with_uuid, finish_subvolumes, make_subvolumes
from twofold.fsinfo.disk import syncfs
from twofold.fsinfo.fsparams import FAT, SNAPSHOT, check_fs, make_fs
from twofold.fsinfo.loopmount import loop_device, mounted
from twofold.image.errors import ImageDamaged, ImageRefused
from twofold.image.filerecords import check_path, get_bytes, load_records
from twofold.image.manifest import Area

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_MAKE = {"p": stat.S_IFIFO, "c": stat.S_IFCHR, "b": stat.S_IFBLK, "s": stat.S_IFSOCK}


@dataclass
class FilesRestored:
    """What the restore of one file-level area wrote."""

    label: str
    entries: int = 0
    file_bytes: int = 0
    size: int = 0  # bytes of the file system made


def _damaged(label: str, err: StoreError) -> ImageDamaged:
    """What a restore says when a chunk or the records of `label` cannot be read."""
    return ImageDamaged(f"{label}: {err.message}", "the restore stopped; mend the image "
                        "with twofold image verify --heal --from OTHER_STORE")


class _Chunks:
    """Chunks by id, loaded (read, decompressed, checked) by a few threads ahead of their
    use in `order`, the order the records use them; the last few kept (small files of one
    group share a chunk)."""

    AHEAD = 2 * WORKERS  # chunks being loaded ahead of the writes

    def __init__(self, store: ChunkStore, label: str, order: list[bytes]) -> None:
        self.store, self.label = store, label
        self.cache: OrderedDict[bytes, bytes] = OrderedDict()
        self.order = iter(order)
        self.ahead: deque[tuple[bytes, Future[bytes]]] = deque()
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="twofold-chunks")

    def _keep(self, cid: bytes, data: bytes) -> None:
        self.cache[cid] = data
        if len(self.cache) > 8:
            self.cache.popitem(last=False)

    def _fill(self) -> None:
        while len(self.ahead) < self.AHEAD and (cid := next(self.order, None)) is not None:
            self.ahead.append((cid, self.pool.submit(self.store.load, cid)))

    def get(self, cid: bytes) -> bytes:
        data = self.cache.get(cid)
        try:
            self._fill()
            while data is None and self.ahead:
                ahead, fut = self.ahead.popleft()
                loaded = fut.result()
                self._keep(ahead, loaded)
                data = loaded if ahead == cid else None
                self._fill()
            if data is None:  # not where the records said (never, but then load it now)
                data = self.store.load(cid)
                self._keep(cid, data)
        except StoreError as err:
            raise _damaged(self.label, err) from None
        return data

    def close(self) -> None:
        """Stop loading ahead (a restore that failed)."""
        for _cid, fut in self.ahead:
            fut.cancel()
        self.pool.shutdown(wait=True)


@contextmanager
def _flushing(point: str) -> Iterator[None]:
    """While the files are written, flush the new file system every quarter second in a
    thread of its own, so the device takes the data as it comes rather than all of it at
    the unmount (the kernel starts on its own only at a tenth of the memory dirty)."""
    stop = threading.Event()

    def flush() -> None:
        while not stop.wait(0.25):
            with suppress(OSError):  # the unmount's own flush says what fails
                syncfs(point)

    thread = threading.Thread(target=flush, name="twofold-flush", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _use_order(records: list[dict[str, Any]]) -> list[bytes]:
    """The chunk ids the records' files use, in the order of use (repeats in a row
    once: small files of one group share their chunk)."""
    out: list[bytes] = []
    for rec in records:
        if rec["k"] == "f" and "h" not in rec and "hx" not in rec:
            for hexid, _offset, _length in rec.get("d", []):
                if hexid is not None and (cid := bytes.fromhex(hexid)) != \
                        (out[-1] if out else None):
                    out.append(cid)
    return out


class _Tree:
    """Opens folders of the new tree component by component, never following a link."""

    def __init__(self, root: str) -> None:
        self.root = os.open(root, _DIR)
        self.open: OrderedDict[bytes, int] = OrderedDict()

    def folder(self, parts: list[bytes]) -> int:
        """An fd of the folder `parts` (relative to the root)."""
        if not parts:
            return self.root
        key = b"/".join(parts)
        fd = self.open.get(key)
        if fd is None:
            parent = self.folder(parts[:-1])
            fd = os.open(parts[-1], _DIR, dir_fd=parent)
            self.open[key] = fd
            if len(self.open) > 64:
                os.close(self.open.popitem(last=False)[1])
        return fd

    def close(self) -> None:
        for fd in self.open.values():
            os.close(fd)
        os.close(self.root)


def refuse_attached_uuid(areas: list[Area], dest: str, outside: set[str]) -> None:
    """ImageRefused, before anything is written, when a btrfs to be made anew has a UUID
    a device outside `dest` (`outside`: the /dev paths that are part of it, excluded)
    holds: mkfs.btrfs would refuse it half way through the restore."""
    for area in areas:
        params = (area.files or {}).get("params", {})
        if params.get("type") not in SNAPSHOT:
            continue
        held = [d for d in devices_with_uuid(str(params["uuid"])) if d not in outside]
        if held:
            raise ImageRefused(
                f"cannot restore {area.label} to {dest}: its btrfs is made anew with its "
                f"UUID {params['uuid']}, and {held[0]} holds a file system with that UUID",
                "btrfs cannot hold two file systems of one UUID: restore over the original "
                "(from rescue media), or detach the original disk first")


def restore_files(store: ChunkStore, area: Area, dest: str, offset: int, size: int,
                  progress: Progress) -> FilesRestored:
    """Make `area`'s file system on `size` bytes of `dest` from `offset` and write its
    files back; ImageDamaged when a chunk fails, FsToolError when a tool does, RestoreError
    when the new file system does not check clean."""
    files = area.files or {}
    params = files["params"]
    kind = str(params["type"])
    done = FilesRestored(area.label, size=size)
    try:
        records = load_records(store, files, f"{area.label} records")
    except StoreError as err:
        raise _damaged(area.label, err) from None
    chunks = _Chunks(store, area.label, _use_order(records))
    progress.phase(f"making {kind} for {area.label}")
    with loop_device(dest, offset, size) as dev:
        make_fs(params, dev, size)
        with mounted(kind, dev) as point:
            if kind in SNAPSHOT:
                make_subvolumes(point, params)
            progress.phase(f"files of {area.label}", total_bytes=int(files["file_bytes"]))
            with nullcontext() if kind in FAT else _flushing(point):  # FUSE: at the unmount
                try:
                    _write_all(records, point, chunks, kind in FAT, done, progress)
                finally:
                    chunks.close()
            if kind in SNAPSHOT:
                finish_subvolumes(point, params)
        problem = check_fs(kind, dev)
    if problem is not None:
        from twofold.core.errors import RestoreError

        raise RestoreError(f"the {kind} file system restored for {area.label} does not "
                           f"check clean: {problem}", "report this as a bug in twofold")
    return done


def _write_all(records: list[dict[str, Any]], point: str, chunks: _Chunks, fat: bool,
               done: FilesRestored, progress: Progress) -> None:
    tree = _Tree(point)
    folders: list[tuple[list[bytes], dict[str, Any]]] = []
    try:
        for rec in records:
            path = get_bytes(rec, "p") or b""
            parts = check_path(path)
            if rec["k"] == "d":
                if parts:
                    parent = tree.folder(parts[:-1])
                    try:
                        os.mkdir(parts[-1], 0o700, dir_fd=parent)
                    except FileExistsError:
                        if not stat.S_ISDIR(os.lstat(parts[-1], dir_fd=parent).st_mode):
                            raise
                if not fat:  # its xattrs come last: a default ACL would reach its files
                    os.fchown(tree.folder(parts), rec["u"], rec["g"])
                folders.append((parts, rec))
            else:
                _write_one(tree, parts, rec, chunks, fat, done)
            done.entries += 1
            progress.advance(files=1, nbytes=int(rec.get("s", 0)))
        for parts, rec in reversed(folders):  # children change their folder's times
            if not fat:
                _owner_xattrs_mode(tree.folder(parts), rec)
            if not parts:
                if not fat:  # FAT's root folder has no times (and fusefat fails on them)
                    os.utime(tree.root, ns=(rec.get("a", rec["t"]), rec["t"]))
            else:
                os.utime(parts[-1], ns=(rec.get("a", rec["t"]), rec["t"]),
                         dir_fd=tree.folder(parts[:-1]), follow_symlinks=False)
    finally:
        tree.close()


def _write_one(tree: _Tree, parts: list[bytes], rec: dict[str, Any], chunks: _Chunks,
               fat: bool, done: FilesRestored) -> None:
    if not parts:
        raise ValueError("a record other than a folder names the root")
    parent, name = tree.folder(parts[:-1]), parts[-1]
    kind = rec["k"]
    if "h" in rec or "hx" in rec:
        first = check_path(get_bytes(rec, "h") or b"")
        os.link(first[-1], name, src_dir_fd=tree.folder(first[:-1]), dst_dir_fd=parent,
                follow_symlinks=False)
        return
    if kind == "f":
        fd = os.open(name, _NEW, 0o600, dir_fd=parent)
        try:
            pos = end = 0
            for hexid, offset, length in rec["d"]:
                if hexid is not None or fat:  # FAT has no holes (nor truncate, via FUSE)
                    data = chunks.get(bytes.fromhex(hexid)) if hexid else bytes(offset + length)
                    os.pwrite(fd, memoryview(data)[offset:offset + length], pos)
                    end = pos + length
                pos += length
            if end < pos:
                os.ftruncate(fd, pos)  # all-zero chunks stay holes
            done.file_bytes += pos
            if not fat:
                _owner_xattrs_mode(fd, rec)
        finally:
            os.close(fd)
    elif kind == "l":
        os.symlink(get_bytes(rec, "l") or b"", name, dir_fd=parent)
        os.chown(name, rec["u"], rec["g"], dir_fd=parent, follow_symlinks=False)
    else:
        os.mknod(name, _MAKE[kind] | 0o600, int(rec.get("r", 0)), dir_fd=parent)
        os.chown(name, rec["u"], rec["g"], dir_fd=parent, follow_symlinks=False)
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=parent)
        try:
            for key, value in rec.get("x", {}).items():
                os.setxattr(f"/proc/self/fd/{fd}", key, bytes.fromhex(value))
            os.chmod(f"/proc/self/fd/{fd}", rec["m"])
        finally:
            os.close(fd)
    os.utime(name, ns=(rec.get("a", rec["t"]), rec["t"]), dir_fd=parent, follow_symlinks=False)


def _owner_xattrs_mode(fd: int, rec: dict[str, Any]) -> None:
    """Owner first (it clears set-id bits and capabilities), then xattrs, then the mode."""
    os.fchown(fd, rec["u"], rec["g"])
    for key, value in rec.get("x", {}).items():
        os.setxattr(fd, key, bytes.fromhex(value))
    os.fchmod(fd, rec["m"])
