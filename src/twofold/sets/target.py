"""The folders of a backup set on the target: current/, versions/, the catalog, a lock."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: the exclusive lock file only
    fcntl = None  # type: ignore[assignment]

from twofold.core.errors import CatalogError, TargetError, UsageError
from twofold.core.holders import is_stale
from twofold.core.holders import me as holder_me
from twofold.core.models import Record
from twofold.core.names import Namer, TargetProfile
from twofold.core.paths import show, unsafe
from twofold.fsinfo.disk import makedirs_inside, read_ahead
from twofold.fsinfo.volume import DRIVE_FILE, DriveId, new_drive_id, read_drive_id
from twofold.sets.catalog import Catalog
from twofold.sets.probe import probe, through_fuse
from twofold.sets.rows import drive_gone, not_answering, target_failure

__all__ = ["SetDir", "target_failure"]

ROOT_DIR = b"twofold"
TMP_FANOUT = 64  # subfolders of .tmp/
CATALOG = b"catalog.sqlite"
LOCK_FREE = b'{"released": true}\n'
"""Written once into a new lock file. Earlier twofold versions created the lock file
exclusively and removed it after the run; they read this as a lock nobody holds."""


class SetDir:
    """Paths of one set: `<target>/twofold/<set>/{current,versions,.tmp,catalog.sqlite}`."""

    def __init__(self, target: str | bytes, set_name: str) -> None:
        if not set_name or "/" in set_name or set_name in (".", "..") or "\\" in set_name:
            raise UsageError(f"bad set name {set_name!r}",
                             "use letters, digits, '-' or '_'")
        self.target = os.fsencode(target)
        self.name = set_name
        self.root = os.path.join(self.target, ROOT_DIR, os.fsencode(set_name))
        self.current = os.path.join(self.root, b"current")
        self.versions = os.path.join(self.root, b"versions")
        self.tmp = os.path.join(self.root, b".tmp")
        self.catalog = os.path.join(self.root, CATALOG)
        self.lock_path = os.path.join(self.root, b"lock")
        self.drive_path = os.path.join(self.root, os.fsencode(DRIVE_FILE))
        self.namer = Namer()  # identity until the catalog says how names are stored
        self.real_dirs: set[bytes] = set()  # folders of current/ seen not to be symlinks
        self._run_dirs: dict[str, bytes] = {}  # run name -> its checked versions/ folder

    def makedirs(self, path: bytes) -> None:
        """Make the folder `path` inside the set, and those missing above it, but never the
        set's own folder: its absence means the drive is gone (fsinfo.disk.makedirs_inside)."""
        makedirs_inside(self.root, path, "the backup set's folder")

    def exists(self) -> bool:
        """True when the set has a catalog on the target."""
        return os.path.exists(self.catalog)

    def require(self) -> None:
        """Fail clearly unless the target holds this set."""
        lost = not_answering(self.target)
        if lost is not None:
            raise drive_gone(lost, os.fsdecode(self.target))
        if not os.path.isdir(self.target):
            raise UsageError(f"target {os.fsdecode(self.target)} does not exist",
                             "is the drive plugged in and mounted?")
        if not self.exists():
            raise UsageError(
                f"no backup set {self.name!r} on {os.fsdecode(self.target)}",
                f"sets there: {', '.join(self.sets_on_target()) or 'none'}")

    def drive(self) -> DriveId | None:
        """The id of the drive the set was made on (drive.json), or None."""
        return read_drive_id(self.drive_path)

    def mark_drive(self) -> DriveId:
        """The set's drive id: the one in drive.json, else a new one written there (a set
        made by an earlier version gets one at its next run)."""
        found = self.drive()
        if found is not None:
            return found
        made = new_drive_id(os.fsdecode(self.root))
        tmp = self.drive_path + b".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(made.to_json(), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.drive_path)
        except OSError as err:
            raise target_failure(err, self.drive_path) from err
        return made

    def sets_on_target(self) -> list[str]:
        """Names of the sets found on the target."""
        base = os.path.join(self.target, ROOT_DIR)
        try:
            names = os.listdir(base)
        except OSError:
            return []
        return sorted(os.fsdecode(n) for n in names
                      if os.path.exists(os.path.join(base, n, CATALOG)))

    def create(self) -> None:
        """Make the set's folders; one that is a symlink (planted on the drive) is refused,
        never written through."""
        for d in (self.current, self.versions, self.tmp):
            os.makedirs(d, exist_ok=True)
        for d in (self.root, self.current, self.versions, self.tmp):
            if os.path.islink(d):
                raise TargetError(f"{os.fsdecode(d)} is a symlink, not a folder; twofold "
                                  "does not write through it",
                                  "replace it by the folder it should be, or use another "
                                  "target")

    def open_catalog(self, *, create: bool = False) -> Catalog:
        """Open the set's catalog and take from it how names are stored on the target.

        With `create` (a backup run), a new set's target is probed first: what the drive
        can hold decides how names are stored and how the catalog is written.
        """
        path = os.fsdecode(self.catalog)
        fresh: TargetProfile | None = None
        if self.exists():
            if through_fuse(self.root):  # in order, ahead of SQLite's page-by-page reads
                read_ahead(self.catalog)
            peek = Catalog(path)
            try:
                profile = peek.profile()
            finally:
                peek.close()
        elif create:
            try:
                profile = fresh = probe(self.root)
            except OSError as err:
                raise target_failure(err, self.root) from err
        else:
            profile = None
        catalog = Catalog(path, create=create, set_name=self.name,
                          whole_files=profile is not None and not profile.rewrites)
        try:
            if create and catalog.profile() is None:
                catalog.set_profile(fresh or probe(self.root))
            self.namer = catalog.namer()
        except OSError as err:
            catalog.close()
            raise target_failure(err, self.root) from err
        except BaseException:
            catalog.close()
            raise
        return catalog

    def cur(self, rel: bytes) -> bytes:
        """Absolute path of the copy of set path `rel` in current/ (joined by hand: a
        checked path is neither empty nor absolute, and os.path.join costs 8 times more,
        several times per file of a run)."""
        return self.current + b"/" + self.namer.rel(_checked(rel))

    def ver(self, run_name: str, rel: bytes) -> bytes:
        """Absolute path of set path `rel` in the versions/ folder of a run."""
        base = self._run_dirs.get(run_name)
        if base is None:  # checked once per run name
            if unsafe(run_name.encode("utf-8", "surrogateescape")) or "/" in run_name:
                raise _unsafe_error(os.fsencode(run_name), "a versions/ folder name")
            base = self._run_dirs[run_name] = os.path.join(self.versions,
                                                           os.fsencode(run_name))
        return base + b"/" + self.namer.rel(_checked(rel))

    def location(self, rec: Record, run_names: dict[int, str]) -> bytes:
        """Where the content of a catalog row is kept on the target."""
        if rec.vrun is None:
            return self.cur(rec.path)
        return self.ver(run_names[rec.vrun], rec.path)

    def candidates(self, rec: Record, run_names: dict[int, str],
                   catalog: Catalog | None = None) -> list[bytes]:
        """Where to look for a row's content: its location, then current/ (a move to
        versions/ may be committed but not yet done when a run was killed), then, for a
        file a run renamed, where the renamed file's content is (a drive without hard
        links keeps no second name in versions/). The caller checks the hash, so a
        fallback can never return wrong data."""
        out = [self.location(rec, run_names)]
        if rec.vrun is not None:
            out.append(self.cur(rec.path))
        for _hop in range(16):  # a file renamed again and again
            if catalog is None or (moved := catalog.moved_row(rec)) is None:
                break
            rec = moved
            if unsafe(rec.path) is not None:
                break
            out.append(self.location(rec, run_names))
        return out

    def clean_tmp(self) -> None:
        """Remove what an interrupted run left in .tmp/ (never part of current/)."""
        with suppress(OSError):
            if not os.listdir(self.tmp):
                return  # nothing to do: a run that copies nothing writes nothing here
        shutil.rmtree(self.tmp, ignore_errors=True)

    def make_tmp(self) -> None:
        """Make .tmp/ and its subfolders (before the first copy of a run)."""
        try:
            for n in range(TMP_FANOUT):
                sub = os.path.join(self.tmp, b"%02x" % n)
                if os.path.islink(sub):  # planted: copies must not go through it
                    os.unlink(sub)
                self.makedirs(sub)
        except OSError as err:
            raise target_failure(err, self.tmp) from err

    def tidy_tmp(self) -> None:
        """Remove .tmp/'s (empty) subfolders after a complete run."""
        try:
            present = set(os.listdir(self.tmp))
        except OSError:
            return
        for n in range(TMP_FANOUT):
            sub = b"%02x" % n
            if sub in present:
                with suppress(OSError):
                    os.rmdir(os.path.join(self.tmp, sub))

    @contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the set's lock for a run (or a prune); `shared` (verify) lets other
        readers in but no run, and on a drive mounted read-only no run can be going on.

        The lock file stays in place and is never written after it was made; the run holds
        a kernel lock (flock) on it, which ends with the process, so a crashed run never
        blocks the next one, and a run that changes nothing leaves the set's folder as it
        was. flock locks belong to the open file, so two runs in one process exclude each
        other too. Where the file system takes no locks, a second file is created exclusively
        instead and removed afterwards (docs/DESIGN.md, "The set's lock").
        """
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if shared and err.errno == errno.EROFS:
                yield
                return
            raise target_failure(err, self.lock_path) from err
        try:
            try:
                if os.fstat(fd).st_size == 0:  # new: what older versions read as "free"
                    os.write(fd, LOCK_FREE)
            except OSError as err:
                raise target_failure(err, self.lock_path) from err
            if self._flock(fd, shared):
                yield
                return
        finally:
            os.close(fd)  # drops the lock
        with self._exclusive(self.lock_path + b".excl"):
            yield

    def in_use(self) -> bool:
        """True while a run holds the set's lock (a run whose process is gone holds none:
        the kernel dropped its lock)."""
        excl = self.lock_path + b".excl"
        if os.path.exists(excl):
            return not is_stale(_holder(excl))
        if fcntl is None:
            return False
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            return err.errno in (errno.EAGAIN, errno.EACCES)
        finally:
            os.close(fd)  # drops the shared lock taken to look
        return False

    def _flock(self, fd: int, shared: bool = False) -> bool:
        """Lock `fd` (True), or False where the file system takes no locks."""
        if fcntl is None:
            return False
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise TargetError(
                    f"set {self.name!r} is in use by another twofold run",
                    "wait until it ends; the lock goes with the process that holds it"
                ) from None
            return False
        return True

    @contextmanager
    def _exclusive(self, path: bytes) -> Iterator[None]:
        """A lock file created exclusively, holding who holds it; one left by a dead process
        on this host is taken over."""
        me = holder_me()
        for _attempt in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _holder(path)
                if is_stale(holder):
                    os.unlink(path)
                    continue
                raise TargetError(
                    f"set {self.name!r} is in use by twofold (pid {holder.get('pid')} on "
                    f"{holder.get('host')})",
                    f"if no twofold runs there, delete {os.fsdecode(path)}") from None
            except OSError as err:
                raise target_failure(err, path) from err
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
            except OSError as err:
                with suppress(OSError):
                    os.unlink(path)
                raise target_failure(err, path) from err
            break
        try:
            yield
        finally:
            with suppress(OSError):
                os.unlink(path)


def _checked(rel: bytes) -> bytes:
    """`rel`, when it stays below the folder it is joined to (the last guard: commands
    check their rows first and name the unsafe ones one by one)."""
    if unsafe(rel) is not None:
        raise _unsafe_error(rel, "a path")
    return rel


def _unsafe_error(rel: bytes, what: str) -> CatalogError:
    return CatalogError(
        f"the catalog names {what} that would leave the set's folder: {show(rel)!r} "
        f"({unsafe(rel)}); nothing was done with it",
        "a crafted or damaged catalog: `twofold repair` rebuilds it from the copies")


def _holder(path: bytes) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
            return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
