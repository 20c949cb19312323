"""Restore a set, or parts of it, as it was after a chosen run, metadata included.

Every file is checked against its BLAKE3 as it is copied; a damaged copy is named and
never put in place. Every path from the catalog is checked and made beneath the opened
destination (fsinfo.beneath), symlinks last, so no row writes outside it.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import tzinfo

from twofold.core.asof import resolve_as_of
from twofold.core.errors import RestoreError, UsageError
from twofold.core.models import Issue, Kind, Record
from twofold.core.paths import from_user, is_within, show, unsafe
from twofold.core.progress import Progress
from twofold.fsinfo.beneath import Beneath, Escape
from twofold.fsinfo.meta import IS_ROOT, apply_metadata
from twofold.sets.catalog import Catalog
from twofold.sets.copy import SourceReadError, copy_file
from twofold.sets.target import SetDir

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_TMPFILE = getattr(os, "O_TMPFILE", 0) if os.path.isdir("/proc/self/fd") else 0


@dataclass
class RestoreResult:
    """What a restore did."""

    run_id: int
    run_name: str
    files: int = 0
    bytes: int = 0
    entries: int = 0
    issues: list[Issue] = field(default_factory=list)


class _Part:
    """The file a restore writes before its BLAKE3 is checked: unnamed (O_TMPFILE) where
    the folder's file system can make one, so a killed restore leaves nothing behind, else
    a named temp file that a rename puts in place."""

    def __init__(self, dir_fd: int) -> None:
        self.dir_fd = dir_fd
        self.name = b".twofold-restore-%d" % os.getpid()
        self.fd: int | None = None
        if _O_TMPFILE:
            with suppress(OSError):  # EOPNOTSUPP, EISDIR...: FUSE, exFAT, older kernels
                self.fd = os.open(b".", _O_TMPFILE | os.O_WRONLY, 0o600, dir_fd=dir_fd)
        if self.fd is None:
            with suppress(FileNotFoundError):
                os.unlink(self.name, dir_fd=dir_fd)

    @property
    def target(self) -> int | tuple[int, bytes]:
        """What copy_file writes to."""
        return self.fd if self.fd is not None else (self.dir_fd, self.name)

    def drop(self) -> None:
        """Forget what was written."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        else:
            with suppress(FileNotFoundError):
                os.unlink(self.name, dir_fd=self.dir_fd)

    def place(self, rec: Record, name: bytes) -> list[str]:
        """Give the verified file `rec`'s metadata and the name `name`; returns what
        metadata could not be set."""
        if self.fd is not None:
            try:
                problems = apply_metadata(self.fd, rec)
                os.link(b"/proc/self/fd/%d" % self.fd, name, dst_dir_fd=self.dir_fd)
            finally:
                os.close(self.fd)
                self.fd = None
            return problems
        out = os.open(self.name, os.O_RDONLY | _O_NOFOLLOW, dir_fd=self.dir_fd)
        try:
            problems = apply_metadata(out, rec)
        finally:
            os.close(out)
        os.rename(self.name, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        return problems


def _selected(path: bytes, wanted: list[bytes]) -> bool:
    if not wanted:
        return True
    return any(is_within(path, w) or is_within(w, path) for w in wanted)


@dataclass
class _Restorer:
    sd: SetDir
    catalog: Catalog
    dest: Beneath  # every entry is made beneath it, never through a symlink
    overwrite: bool
    progress: Progress
    result: RestoreResult
    names: dict[int, str]
    link_targets: set[bytes]
    restored_links: set[bytes] = field(default_factory=set)
    dirs: list[Record] = field(default_factory=list)
    links: list[Record] = field(default_factory=list)  # symlinks: made after the rest
    drive: Beneath | None = None  # the set's folder, where copies are read beneath

    def note(self, path: bytes, kind: str, message: str) -> None:
        issue = Issue(path, kind, message)
        self.result.issues.append(issue)
        self.progress.issue(issue)

    def entry(self, rec: Record) -> None:
        """Restore one row (a symlink is only noted, for links())."""
        why = unsafe(rec.path) or (None if rec.link_to is None else unsafe(rec.link_to))
        if why is not None:
            self.note(rec.path, "unsafe", f"not restored: {why} (a crafted or damaged "
                      "catalog?)")
            return
        if rec.kind is Kind.SYMLINK:
            self.links.append(rec)
            return
        try:
            self._entry(rec)
        except Escape as err:
            self.note(rec.path, "unsafe", f"not restored: {err.strerror} ({err.filename})")

    def on_drive(self, where: bytes) -> bytes:
        """A path to read the copy at `where` by, never through a symlink planted in the
        set's folders on the drive (Escape if one is on the way)."""
        if self.drive is None:
            return where
        try:
            return self.drive.at(os.path.relpath(where, self.sd.root))
        except Escape:
            raise
        except OSError as err:  # a folder on the way is missing: the copy is not there
            raise SourceReadError(err.errno, err.strerror, where) from err

    def links_last(self) -> None:
        """Make the symlinks, after every entry (a row below a symlink was made as a real
        folder's, so no write follows a restored symlink)."""
        for rec in self.links:
            try:
                self._entry(rec)
            except Escape as err:
                self.note(rec.path, "unsafe", f"not restored: {err.strerror} "
                          f"({err.filename})")
            except OSError as err:
                self.note(rec.path, "failed", err.strerror or str(err))

    def _entry(self, rec: Record) -> None:
        b = self.dest
        st = b.lstat(rec.path)
        if rec.kind is Kind.DIR:
            if st is not None and not stat.S_ISDIR(st.st_mode):
                self.note(rec.path, "exists", "a file is in the way of this folder")
                return
            b.folder(rec.path, create=True)
            self.dirs.append(rec)
            self.result.entries += 1
            return
        if st is not None:
            if not self.overwrite or stat.S_ISDIR(st.st_mode):
                self.note(rec.path, "exists", "already there; not overwritten"
                          if not self.overwrite else "a folder is in the way")
                return
            fd, name = b.parent(rec.path)
            os.unlink(name, dir_fd=fd)
        fd, name = b.parent(rec.path, create=True)
        if rec.kind is Kind.FILE:
            if not self.file(rec, fd, name):
                return
        elif rec.kind is Kind.SYMLINK:
            assert rec.target is not None
            os.symlink(rec.target, name, dir_fd=fd)
            apply_metadata(b.at(rec.path), rec)
        elif rec.kind is Kind.FIFO:
            os.mkfifo(name, 0o600, dir_fd=fd)
            apply_metadata(b.at(rec.path), rec)
        elif rec.kind in (Kind.CHAR, Kind.BLOCK) and IS_ROOT:
            os.mknod(name, rec.mode | (0o020000 if rec.kind is Kind.CHAR else 0o060000),
                     rec.rdev, dir_fd=fd)
            apply_metadata(b.at(rec.path), rec)
        else:
            self.note(rec.path, "skipped", "sockets and devices (without root) are not "
                      "recreated")
            return
        self.result.entries += 1

    def file(self, rec: Record, fd: int, name: bytes) -> bool:
        """Restore one regular file as `name` in the opened folder `fd`; False when it
        could not be."""
        if rec.link_to is not None and rec.link_to in self.restored_links:
            head, _, first = rec.link_to.rpartition(b"/")
            src_fd = self.dest.own(head)  # `fd` stays open: Beneath keeps one folder
            try:
                os.link(first, name, src_dir_fd=src_fd, dst_dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(src_fd)
            self.progress.advance(1, 0)
            return True
        found: list[tuple[str, str]] = []  # (kind, message) per candidate tried
        for src in self.sd.candidates(rec, self.names, self.catalog):
            part = _Part(fd)
            try:
                copied = copy_file(self.on_drive(src), part.target)
            except SourceReadError as err:
                part.drop()
                found.append(("failed", f"cannot read the backup copy {show(src)}: "
                              f"{err.strerror}"))
                continue
            except Escape as err:
                part.drop()
                found.append(("unsafe", f"the backup copy {show(src)} is reached through "
                              f"a symlink on the drive; not followed ({err.strerror})"))
                continue
            except OSError as err:
                part.drop()
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise RestoreError(f"no space left in {os.fsdecode(self.dest.root)}",
                                       "free some space or restore elsewhere") from err
                raise
            if copied.hash == rec.hash and copied.size == rec.size:
                break
            part.drop()
            found.append(("damaged", f"the backup copy {show(src)} does not match its "
                          "BLAKE3; not restored (run `twofold verify`)"))
        else:
            self.note(rec.path, *found[0])  # the main location's problem
            return False
        self.progress.advance(1, copied.size)
        problems = part.place(rec, name)
        if problems and IS_ROOT:
            self.note(rec.path, "metadata", "; ".join(problems))
        if rec.path in self.link_targets:
            self.restored_links.add(rec.path)
        self.result.files += 1
        self.result.bytes += copied.size
        return True

    def finish_dirs(self) -> None:
        """Folder metadata, deepest first (after their contents, whose making changes it)."""
        for rec in sorted(self.dirs, key=lambda r: r.path.count(b"/"), reverse=True):
            try:
                apply_metadata(self.dest.folder(rec.path), rec)
            except OSError as err:
                self.note(rec.path, "metadata", err.strerror or str(err))


def restore(target: str, set_name: str, dest: str, paths: list[str], as_of: str | None,
            overwrite: bool, progress: Progress, tz: tzinfo) -> RestoreResult:
    """Restore `paths` (all when empty) of set `set_name` into folder `dest`."""
    sd = SetDir(target, set_name)
    sd.require()
    real_dest = os.path.realpath(os.path.expanduser(dest))
    if is_within(os.fsencode(real_dest), os.path.realpath(sd.root)):
        raise UsageError("cannot restore into the backup itself",
                         "choose a folder outside the target's twofold/ folder")
    with sd.open_catalog() as catalog:
        runs = catalog.runs()
        run_id = resolve_as_of([(r.id, r.finished_ns, r.state) for r in runs], as_of, tz)
        names = {r.id: r.name for r in runs}
        result = RestoreResult(run_id, names[run_id])
        wanted = [from_user(p) for p in paths]
        found: set[bytes] = set()
        n_files = n_bytes = 0
        for rec in catalog.valid_at(run_id):  # first pass: totals, and every PATH exists
            if _selected(rec.path, wanted):
                found.update(w for w in wanted if is_within(rec.path, w))
                if rec.kind is Kind.FILE:
                    n_files, n_bytes = n_files + 1, n_bytes + rec.size
        for w in wanted:
            if w not in found:
                raise UsageError(f"{show(w)} is not in the backup as of run {run_id}",
                                 "`twofold history` shows the versions of a path")
        try:
            os.makedirs(real_dest, exist_ok=True)
        except OSError as err:
            raise RestoreError(f"cannot create {real_dest}: {err.strerror}") from err
        with Beneath(os.fsencode(real_dest)) as beneath, Beneath(sd.root) as drive:
            worker = _Restorer(sd, catalog, beneath, overwrite, progress, result, names,
                               catalog.link_targets(run_id), drive=drive)
            progress.phase("restoring", n_files, n_bytes)
            rows = (r for r in catalog.valid_at(run_id) if _selected(r.path, wanted))
            for rec in rows:
                try:
                    worker.entry(rec)
                except RestoreError:
                    raise
                except OSError as err:
                    worker.note(rec.path, "failed", err.strerror or str(err))
            worker.links_last()
            worker.finish_dirs()
    progress.finish()
    return result

