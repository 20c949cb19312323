"""The read-only FUSE file system of `twofold image mount` (through mfusepy): the whole
disk and each block-level partition as image files read on demand from the store's
chunks, an empty folder per partition for its file system to be mounted on, and each
file-level partition's files directly, from its records. Run as its own process:
`python -m twofold.image.imagefs TARGET IMAGE MOUNTPOINT`."""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import threading
from dataclasses import dataclass
from typing import Any

from twofold.blobs.objects import StoreError
from twofold.chunks.chunkstore import ChunkStore
from twofold.image.errors import ImageDamaged
from twofold.image.filerecords import check_path, get_bytes, load_records
from twofold.image.manifest import Area, Manifest, ManifestError
from twofold.image.reader import ChunkCache, ImageReader

DISK_FILE = "disk.img"
IMMUTABLE = 86400.0
"""Seconds the kernel may keep names and attributes: nothing in an image ever changes."""


@dataclass(frozen=True)
class Shown:
    """How the mount shows one partition (or the volume of a partition image)."""

    area: Area
    folder: str  # "part1", or "volume": its file system is mounted (or its files shown) here
    file: str | None  # its blocks as a file ("part1-ext4-root.img"); None: taken at file level


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._")[:32]


def shown(m: Manifest) -> list[Shown]:
    """The partitions of `m` as the mount shows them, in the manifest's order."""
    out = []
    for area in m.areas:
        if area.role == "disk":
            continue
        folder = "volume" if area.role == "volume" else f"part{area.number}"
        kind = area.fs or (str(area.files["params"].get("type", "")) if area.files else "")
        label = area.fs_label or (str(area.files["params"].get("label") or "")
                                  if area.files else "")
        name = "-".join(p for p in (folder, _safe(kind), _safe(label)) if p)
        out.append(Shown(area, folder, None if area.files is not None else f"{name}.img"))
    return out


def disk_file(m: Manifest) -> str | None:
    """The name of the whole disk's file; None for a partition image, or a disk holding a
    partition taken at file level (its blocks were never stored)."""
    if m.kind != "disk" or any(a.files is not None for a in m.areas):
        return None
    return DISK_FILE


class FileTree:
    """A file-level partition's files, folders and links, from its records."""

    def __init__(self, records: list[dict[str, Any]], first_ino: int) -> None:
        self.entries: dict[bytes, dict[str, Any]] = {}
        self.inos: dict[bytes, int] = {}  # hard links share their first name's
        self.children: dict[bytes, list[str]] = {}
        self.links: dict[bytes, int] = {}
        for rec in records:
            path = get_bytes(rec, "p") or b""
            parts = check_path(path)
            self.entries[path] = rec
            if rec["k"] == "d":
                self.children.setdefault(path, [])
            if parts:
                parent = b"/".join(parts[:-1])
                self.children.setdefault(parent, []).append(os.fsdecode(parts[-1]))
            first = get_bytes(rec, "h")
            if first is not None:
                self.links[first] = self.links.get(first, 1) + 1
            self.inos[path] = first_ino + len(self.inos)
        self.last_ino = first_ino + len(self.inos)

    def data_of(self, path: bytes) -> tuple[bytes, dict[str, Any]]:
        """The record holding the data of `path` (a hard link's first name) and its path."""
        rec = self.entries[path]
        first = get_bytes(rec, "h")
        return (first, self.entries[first]) if first is not None else (path, rec)

    def attrs(self, path: bytes) -> dict[str, Any]:
        rec = self.entries[path]
        kind = {"f": stat.S_IFREG, "d": stat.S_IFDIR, "l": stat.S_IFLNK, "c": stat.S_IFCHR,
                "b": stat.S_IFBLK, "p": stat.S_IFIFO, "s": stat.S_IFSOCK}[rec["k"]]
        first, data = self.data_of(path)
        size = int(data.get("s", 0)) if rec["k"] == "f" else \
            len(get_bytes(rec, "l") or b"") if rec["k"] == "l" else 0
        nlink = 2 if rec["k"] == "d" else self.links.get(first, 1)
        return {"st_mode": kind | int(data["m"]), "st_ino": self.inos[first],
                "st_uid": data["u"], "st_gid": data["g"],
                "st_size": size, "st_nlink": max(nlink, 1), "st_rdev": int(rec.get("r", 0)),
                "st_mtime": data["t"], "st_atime": data.get("a", data["t"]),
                "st_ctime": data.get("c", data["t"]), "st_blocks": (size + 511) // 512}


class _TreeFile:
    """An open file of a file-level partition: its pieces in order."""

    def __init__(self, rec: dict[str, Any], cache: ChunkCache, where: str) -> None:
        self.pieces = [(None if h is None else bytes.fromhex(h), int(o), int(n))
                       for h, o, n in rec.get("d", [])]
        self.cache, self.where = cache, where

    def read(self, offset: int, length: int) -> bytes:
        out = []
        pos = 0
        end = offset + length
        for cid, inner, n in self.pieces:
            lo, hi = max(pos, offset), min(pos + n, end)
            if lo < hi:
                if cid is None:
                    out.append(bytes(hi - lo))
                else:
                    data = self.cache.get(cid, self.where)
                    out.append(data[inner + lo - pos:inner + hi - pos])
            pos += n
            if pos >= end:
                break
        return b"".join(out)


class ImageFS:
    """The FUSE operations (mfusepy's Operations protocol) over one image."""

    use_ns = True

    def __init__(self, store: ChunkStore, m: Manifest, log: Any = None) -> None:
        self.manifest = m
        self.cache = ChunkCache(store, m.name)
        self.log = log if log is not None else sys.stderr
        self.time = m.created_ns
        self.files: dict[str, ImageReader] = {}
        self.folders: set[str] = set()
        self.trees: dict[str, FileTree] = {}
        ino = 1000  # inode numbers of file-level partitions' entries (the rest: below)
        disk = disk_file(m)
        if disk is not None:
            self.files[disk] = ImageReader(store, m, cache=self.cache)
        for s in shown(m):
            if s.file is not None:
                self.files[s.file] = ImageReader(store, m, s.area, self.cache)
                self.folders.add(s.folder)
            else:
                files = s.area.files or {}
                try:
                    records = load_records(store, files, f"{s.area.label} records")
                except StoreError as err:
                    raise ImageDamaged(f"image {m.name}, {s.area.label}: its records cannot "
                                       f"be read: {err.message}") from None
                self.trees[s.folder] = tree = FileTree(records, ino)
                ino = tree.last_ino
        self._handles: dict[int, ImageReader | _TreeFile] = {}
        self._next_handle = 1
        self._lock = threading.Lock()
        self.errors: list[str] = []

    # -- names ---------------------------------------------------------------------------

    def _split(self, path: str) -> tuple[str, bytes | None]:
        """("part1", b"etc/hosts") for a path in a file-level partition; (top name, None)
        otherwise; ENOENT for a name that is not there."""
        parts = path.strip("/").split("/", 1)
        top = parts[0]
        if top in self.trees:
            rel = os.fsencode(parts[1]) if len(parts) > 1 else b""
            if rel not in self.trees[top].entries:
                raise OSError(errno.ENOENT, "not in the image")
            return top, rel
        if len(parts) > 1 or (top and top not in self.files and top not in self.folders):
            raise OSError(errno.ENOENT, "not in the image")
        return top, None

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        top, rel = self._split(path)
        if rel is not None:
            return self.trees[top].attrs(rel)
        times = {"st_mtime": self.time, "st_atime": self.time, "st_ctime": self.time}
        if top in self.files:
            size = self.files[top].size
            return {"st_mode": stat.S_IFREG | 0o400, "st_nlink": 1, "st_size": size,
                    "st_ino": 2 + list(self.files).index(top),
                    "st_uid": 0, "st_gid": 0, "st_blocks": (size + 511) // 512, **times}
        ino = 1 if not top else 100 + sorted(self.folders).index(top)
        return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_uid": 0, "st_gid": 0,
                "st_ino": ino, **times}

    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        top, rel = self._split(path)
        if rel is not None:
            names = self.trees[top].children.get(rel, [])
        else:
            names = [] if top else [*self.files, *sorted(self.folders | set(self.trees))]
        here = path.rstrip("/")
        out = []
        for name in [".", "..", *names]:  # each with its inode: 0 would hide it
            if name == "..":
                st = {"st_mode": stat.S_IFDIR, "st_ino": 1}
            else:
                full = here if name == "." else f"{here}/{name}"
                attrs = self.getattr(full or "/")
                st = {"st_mode": attrs["st_mode"], "st_ino": attrs["st_ino"]}
            out.append((name, st, 0))
        return out

    def readlink(self, path: str) -> str:
        top, rel = self._split(path)
        rec = self.trees[top].entries[rel] if rel is not None else {}
        if rec.get("k") != "l":
            raise OSError(errno.EINVAL, "not a symlink")
        return os.fsdecode(get_bytes(rec, "l") or b"")

    def listxattr(self, path: str) -> list[str]:
        top, rel = self._split(path)
        if rel is None:
            return []
        return list(self.trees[top].data_of(rel)[1].get("x", {}))

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        top, rel = self._split(path)
        found = self.trees[top].data_of(rel)[1].get("x", {}).get(name) if rel is not None \
            else None
        if found is None:
            raise OSError(errno.ENODATA, "no such attribute")
        return bytes.fromhex(found)

    def statfs(self, path: str) -> dict[str, int]:
        blocks = self.manifest.size // 4096
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": blocks, "f_bfree": 0,
                "f_bavail": 0, "f_namemax": 255}

    # -- data ----------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise OSError(errno.EROFS, "the image is mounted read-only")
        top, rel = self._split(path)
        handle: ImageReader | _TreeFile
        if rel is not None:
            tree = self.trees[top]
            if tree.entries[rel]["k"] != "f":
                raise OSError(errno.EINVAL, "not a file")
            first, rec = tree.data_of(rel)
            shown_path = f"{top}/{os.fsdecode(first)}"
            handle = _TreeFile(rec, self.cache, f"file {shown_path}")
        elif top in self.files:
            handle = self.files[top]
        else:
            raise OSError(errno.EISDIR, "a folder")
        with self._lock:
            fh = self._next_handle
            self._next_handle += 1
            self._handles[fh] = handle
        return fh

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        try:
            return self._handles[fh].read(offset, size)
        except ImageDamaged as err:
            self._say(f"twofold: I/O error reading {path}: {err.message}")
            raise OSError(errno.EIO, err.message) from None

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            self._handles.pop(fh, None)
        return 0

    def _say(self, line: str) -> None:
        with self._lock:
            self.errors.append(line)
            print(line, file=self.log, flush=True)


def serve(target: str, image: str, point: str) -> None:
    """Mount `image` of the store at `target` on `point` and serve it until unmounted
    (the foreground of this process)."""
    import mfusepy

    from twofold.image.repo import load_manifest, open_keyed, open_store
    from twofold.vault.objects import PASSPHRASE_ENV

    store = open_store(open_keyed(target, None, os.environb.get(PASSPHRASE_ENV.encode())))
    m = load_manifest(store.objects, image)
    ops = ImageFS(store, m)
    extra = {"allow_other": True} if os.geteuid() == 0 else {}
    mfusepy.FUSE(ops, point, foreground=True, ro=True, default_permissions=True,
                 fsname=f"twofold:{image}", subtype="twofold", kernel_cache=True,
                 attr_timeout=IMMUTABLE, entry_timeout=IMMUTABLE, negative_timeout=IMMUTABLE,
                 use_ino=True,
                 **extra)


def main(argv: list[str]) -> int:
    """The server process: TARGET IMAGE MOUNTPOINT; errors on stderr, exit 1."""
    from twofold.core.errors import TwofoldError

    try:
        serve(*argv)
    except (TwofoldError, ManifestError) as err:
        print(f"twofold: {err}", file=sys.stderr, flush=True)
        return 1
    except (OSError, RuntimeError) as err:
        print(f"twofold: the FUSE file system failed: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
