"""Named immutable objects: the narrow storage interface of the image store, and its
local-folder implementation (blobs/sftp.py and blobs/s3.py implement it over the network)."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

from twofold.core.errors import ExitCode, TargetError
from twofold.core.holders import pid_alive
from twofold.fsinfo.blockio import write_durably
from twofold.fsinfo.disk import fsync_dir, makedirs_inside
from twofold.fsinfo.volume import DriveGuard

TMP_DIR = ".tmp"
"""Objects being written; never listed, never part of the store."""
RESERVE = ".reserve"
"""A file of zeros kept in a local store's folder, never listed: `delete` and `prune`
remove it first, so that even on a full drive they can write their lock and rewrite a
pack (docs/DESIGN.md, "Deleting on a full drive")."""


class StoreError(TargetError):
    """The store cannot be read or written: missing object, I/O failure, bad name."""


class TargetMissing(StoreError):
    """The folder named as the target does not exist: exit 2, as for any path."""

    exit_code = ExitCode.USAGE


class ObjectMissing(StoreError):
    """An object the store should hold is not there."""


class StoreFullError(StoreError):
    """The store's drive has no space left."""


@dataclass(frozen=True)
class ObjectInfo:
    """A stored object: its name ("/"-separated, relative to the store) and size in bytes."""

    name: str
    size: int


class ObjectStore(Protocol):
    """Write-once named objects. Names are relative, "/"-separated, without "." or ".."
    parts. An object, once put, is never changed; only deleted."""

    writers: int
    """How many puts are worth running at once (1 for a local drive, more over a network)."""

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose name starts with `prefix`, sorted by name."""
        ...

    def get(self, name: str) -> bytes:
        """The whole object; ObjectMissing when absent."""
        ...

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """`length` bytes at `offset` (fewer only at the object's end); ObjectMissing."""
        ...

    def put_once(self, name: str, data: bytes) -> bool:
        """Store `data` under `name` atomically and durably; False (nothing written) when
        the name already exists. A reader sees the whole object or none of it."""
        ...

    def delete(self, name: str) -> None:
        """Remove the object; no error when it is already gone."""
        ...

    def exists(self, name: str) -> bool:
        """True when the object exists."""
        ...

    def describe(self) -> str:
        """Where the store lives, for messages (never with credentials)."""
        ...

    def discard_partial(self) -> int:
        """Remove what unfinished puts left (temp files, unfinished uploads); called only
        under the exclusive lock, when no put may be running. Returns how many."""
        ...


def check_name(name: str) -> str:
    """`name` when it is a valid object name; StoreError otherwise."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts) or "\\" in name or "\0" in name:
        raise StoreError(f"bad object name {name!r}")
    return name


def io_failure(err: OSError, what: str) -> StoreError:
    """The error for a failed read or write of the store at `what`."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(
            f"the image store is full (while writing {what})",
            "free some space or use a larger drive; images already listed are unharmed "
            "and a new run reuses what this one stored")
    return StoreError(f"store I/O failed at {what}: {err.strerror or err}",
                      "is the drive still connected? images already listed are unharmed")


def this_host() -> str:
    """This host's name as it starts a temp file's name (no "-" in it)."""
    return socket.gethostname().replace("-", "_") or "host"


def temp_name(host: str) -> str:
    """A unique temp file name that tells its writer: <host>-<pid>-<random>."""
    return f"{host}-{os.getpid()}-{os.urandom(8).hex()}"


def dead_writer(name: str, host: str) -> bool:
    """True when the temp file `name` is of a writer on `host` whose process is gone."""
    their_host, _, rest = name.partition("-")
    pid = rest.partition("-")[0]
    return their_host == host and pid.isdigit() and not pid_alive(int(pid))


class LocalObjects:
    """An ObjectStore in a folder: one file per object, written temp → fsync → rename."""

    writers = 1

    def __init__(self, root: str | os.PathLike[str], guard: DriveGuard | None = None) -> None:
        self.root = os.fspath(root)
        self.guard = guard  # the drive holding the folder: checked before every write
        self._host = this_host()
        self._swept = False
        self._root_seen = False  # once it was there, its absence means the drive is gone

    def _sweep_temp(self, tmp_dir: str, everything: bool = False) -> int:
        """Remove temp files a killed writer of this host left (its pid is gone), or
        `everything` there."""
        self._swept = True
        try:
            names = os.listdir(tmp_dir)
        except OSError:
            return 0
        count = 0
        for name in names:
            if everything or dead_writer(name, self._host):
                with suppress(OSError):
                    os.unlink(os.path.join(tmp_dir, name))
                    count += 1
        return count

    def discard_partial(self) -> int:
        """Remove every temp file."""
        return self._sweep_temp(os.path.join(self.root, TMP_DIR), everything=True)

    def describe(self) -> str:
        """The folder."""
        return self.root

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *check_name(name).split("/"))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Walk the folder below the deepest directory named by `prefix`."""
        head, _, _tail = prefix.rpartition("/")
        base = os.path.join(self.root, *head.split("/")) if head else self.root
        return sorted((i for i in self._walk(base, head) if i.name.startswith(prefix)),
                      key=lambda i: i.name)

    def _walk(self, folder: str, rel: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        except OSError as err:
            raise io_failure(err, folder) from err
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            if name in (TMP_DIR, RESERVE):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, name)
            elif entry.is_file(follow_symlinks=False):
                yield ObjectInfo(name, entry.stat(follow_symlinks=False).st_size)

    def get(self, name: str) -> bytes:
        """Read the whole file."""
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ObjectMissing(f"{name} is missing from the store {self.root}") from None
        except OSError as err:
            raise io_failure(err, path) from err

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """One positional read (looping over short reads)."""
        path = self._path(name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise ObjectMissing(f"{name} is missing from the store {self.root}") from None
        except OSError as err:
            raise io_failure(err, path) from err
        try:
            parts: list[bytes] = []
            done = 0
            while done < length:
                data = os.pread(fd, length - done, offset + done)
                if not data:
                    break
                parts.append(data)
                done += len(data)
            return b"".join(parts)
        except OSError as err:
            raise io_failure(err, path) from err
        finally:
            os.close(fd)

    def put_once(self, name: str, data: bytes) -> bool:
        """Write to .tmp/, fsync, then link (or rename) into place unless the name exists."""
        final = self._path(name)
        if self.guard is not None:
            self.guard.check()
        if os.path.exists(final):
            return False
        tmp_dir = os.path.join(self.root, TMP_DIR)
        tmp = os.path.join(tmp_dir, temp_name(self._host))
        try:
            if not self._root_seen:  # a new store's first write makes its folder
                os.makedirs(self.root, exist_ok=True)
                self._root_seen = True
            makedirs_inside(self.root, tmp_dir, "the image store's folder")
            if not self._swept:
                self._sweep_temp(tmp_dir)
            makedirs_inside(self.root, os.path.dirname(final), "the image store's folder")
            write_durably(tmp, data)
            return self._place(tmp, final)
        except OSError as err:
            raise io_failure(err, final) from err
        finally:
            with suppress(OSError):
                os.unlink(tmp)

    @staticmethod
    def _place(tmp: str, final: str) -> bool:
        """Publish `tmp` as `final` without ever replacing an existing `final`."""
        try:
            os.link(tmp, final)  # fails with EEXIST: no overwrite even between writers
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK,
                                 errno.ENOSYS):
                raise
            if os.path.exists(final):  # FAT/exFAT: no hard links; a rename is atomic
                return False
            os.rename(tmp, final)
        fsync_dir(os.path.dirname(final))
        return True

    def delete(self, name: str) -> None:
        """Unlink the file; remove its folder when it became empty."""
        path = self._path(name)
        if self.guard is not None:
            self.guard.check()
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as err:
            raise io_failure(err, path) from err
        folder = os.path.dirname(path)
        while folder != self.root and folder.startswith(self.root):
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)

    def exists(self, name: str) -> bool:
        """True when the file exists."""
        return os.path.isfile(self._path(name))

    def keep_reserve(self, nbytes: int) -> bool:
        """Make the reserve file (RESERVE) of `nbytes` where it is missing or of another
        size, as far as the drive has room; True when it is whole."""
        path = os.path.join(self.root, RESERVE)
        with suppress(OSError):
            if os.path.getsize(path) == nbytes:
                return True
        try:
            with open(path, "wb", buffering=0) as f:
                try:  # blocks allocated without writing them, where the driver can
                    os.posix_fallocate(f.fileno(), 0, nbytes)
                except (OSError, AttributeError):
                    f.write(bytes(nbytes))  # zeros written, not a hole: blocks are held
                os.fsync(f.fileno())
        except OSError:
            return False
        return True

    def release_reserve(self) -> int:
        """Remove the reserve file; the bytes it held (0 when there was none)."""
        path = os.path.join(self.root, RESERVE)
        try:
            held = os.path.getsize(path)
            os.unlink(path)
        except OSError:
            return 0
        return held
