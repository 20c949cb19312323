"""Carry out a planned run in batches: copy into .tmp/, flush, commit to the catalog, rename.

Per batch: new content is written to .tmp/ and flushed to the device; then one catalog
transaction records the new rows and the pending renames; then the renames move replaced
files to versions/<run>/ and the new ones into current/. A kill at any point leaves
current/ with whole files only, and the pending list lets the next run finish the renames.
The workers copy the next batch while the main thread commits and renames this one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from twofold.backup.copyjob import CopyOutcome, CopyTask, copy_many
from twofold.backup.fits import name_problem
from twofold.backup.fresh import Fresh
from twofold.backup.ops import apply_op, set_dir_times
from twofold.backup.records import to_record
from twofold.backup.steps import Step, tally, unsafe_step
from twofold.backup.twins import place_twins
from twofold.core.diff import Action, Change
from twofold.core.models import Entry, Issue, Kind, RunStats
from twofold.core.names import too_large
from twofold.core.paths import parent_of
from twofold.core.progress import Progress
from twofold.fsinfo.children import can_fork, child_context, die_with_parent
from twofold.fsinfo.disk import can_syncfs, syncfs
from twofold.fsinfo.meta import apply_metadata, read_xattrs
from twofold.fsinfo.scan import entry_from_stat
from twofold.fsinfo.volume import DriveGuard
from twofold.sets.catalog import Catalog, PendingOp
from twofold.sets.target import TMP_FANOUT, SetDir, target_failure

BATCH_FILES = 4000
BATCH_BYTES = 512 << 20
CHUNK_FILES = 32  # files per worker task
CHUNK_BYTES = 8 << 20
COPY_WORKERS = min(8, max(2, 2 * (os.cpu_count() or 1)))
"""Copy workers by default: two per CPU, so reads of a cold source keep the disk busy
while other workers hash and write (docs/DESIGN.md, "Copy workers")."""


Chunks = dict[Future[list[CopyOutcome]], list[tuple["Step", str]]]
Started = tuple[list["Step"], Chunks]


@dataclass
class Applier:
    """Applies the changes of one run to the target."""

    sd: SetDir
    catalog: Catalog
    run_id: int
    run_name: str
    sources: dict[bytes, bytes]  # top-level name -> absolute source path
    progress: Progress
    stats: RunStats
    workers: int = 0  # 0: COPY_WORKERS
    moved_from: dict[bytes, bytes] = field(default_factory=dict)  # old path -> new path
    moved_to: dict[bytes, bytes] = field(default_factory=dict)  # new path -> old path
    _moves_done: set[bytes] = field(default_factory=set)  # new paths
    _rmdirs: list[PendingOp] = field(default_factory=list)
    _seq: int = 0
    _tmp_seq: int = 0
    _pool: Executor | None = None
    _touched: set[bytes] = field(default_factory=set)
    _dir_mtime: dict[bytes, int] = field(default_factory=dict)
    _link_hash: dict[bytes, bytes] = field(default_factory=dict)
    _done_seq: int = 0
    _fresh: Fresh = field(default_factory=Fresh)
    guard: DriveGuard | None = None  # checked before each batch is committed and renamed

    def src(self, rel: bytes) -> bytes:
        """Absolute source path of a relative path."""
        top, _, inner = rel.partition(b"/")
        base = self.sources[top]
        return os.path.join(base, inner) if inner else base

    def run(self, changes: Iterable[Change], total_files: int, total_bytes: int) -> None:
        """Apply all changes, then finish the run's folders."""
        self.progress.phase("copying", total_files, total_bytes)
        batch: list[Change] = []
        size = 0
        in_flight: Started | None = None
        try:  # the copy workers start with the first copy: none on a run with none
            for ch in changes:
                batch.append(ch)
                if ch.entry is not None and ch.entry.kind is Kind.FILE:
                    size += ch.entry.size
                if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
                    # The next batch copies while this one is committed and renamed.
                    started = self._start(batch)
                    if in_flight is not None:
                        self._finish(*in_flight)
                    in_flight, batch, size = started, [], 0
            if batch:
                started = self._start(batch)
                if in_flight is not None:
                    self._finish(*in_flight)
                in_flight = started
            if in_flight is not None:
                self._finish(*in_flight)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        for op in sorted(self._rmdirs, key=lambda o: o.path.count(b"/"), reverse=True):
            try:
                apply_op(self.sd, self.run_name, op, lambda _p: None)
            except OSError as err:
                raise target_failure(err, op.path) from err
        self._finish_dirs()

    # one batch -----------------------------------------------------------------------------

    def _start(self, changes: list[Change]) -> Started:
        """Prepare a batch: hand new files to the workers, do the rest here."""
        steps = [Step(ch) for ch in changes]
        futures: Chunks = {}
        chunk: list[tuple[Step, str]] = []
        chunk_bytes = 0
        for step in steps:
            if unsafe_step(step) or self._too_large(step) or self._too_long(step):
                continue
            if self._needs_worker(step.change):
                chunk.append((step, self._next_tmp()))
                chunk_bytes += step.change.entry.size if step.change.entry else 0
                if len(chunk) >= CHUNK_FILES or chunk_bytes >= CHUNK_BYTES:
                    futures[self._submit(chunk)] = chunk
                    chunk, chunk_bytes = [], 0
            else:
                self._prepare_other(step)
        if chunk:
            futures[self._submit(chunk)] = chunk
        return steps, futures

    def _finish(self, steps: list[Step], futures: Chunks) -> None:
        """Wait for a batch's copies, flush, commit it to the catalog, then rename."""
        self._wait(futures)
        if self.guard is not None:
            self.guard.check()
        for step in steps:
            self._resolve_link(step)  # hard links take the hash of the file they link to
            if step.op is not None:
                self._seq += 1
                step.op.seq = self._seq
        names = place_twins(self.sd, (s.op for s in steps if s.op is not None and (
            s.change.old is None or s.op.op == "move")), self._fresh)
        try:
            if futures:
                self._flush()
            with self.catalog.transaction():
                self.catalog.add_names(names)
                self.catalog.clear_pending(self.run_id, self._done_seq)
                self.catalog.close_rows((s.close[0], self.run_id, s.close[1])
                                        for s in steps if s.close is not None)
                self.catalog.insert(s.record for s in steps if s.record is not None)
                ops = [s.op for s in steps if s.op is not None]
                self.catalog.add_pending(self.run_id, ops)
                self.catalog.add_moves(self.run_id, ((o.link_to, o.path) for o in ops
                                                     if o.op == "move" and o.link_to))
        except OSError as err:
            raise target_failure(err, self.sd.catalog) from err
        entries = {s.record.path: s.record for s in steps if s.record is not None}
        for op in ops:
            self._touched.add(parent_of(op.path))
            if op.op == "rmdir":  # after the folder's contents have moved out
                self._rmdirs.append(op)
                continue
            if op.link_to is not None:
                self._touched.add(parent_of(op.link_to))
            try:
                apply_op(self.sd, self.run_name, op, entries.get, replay=False,
                         fresh=self._fresh)
            except OSError as err:
                raise target_failure(err, op.path) from err
        if ops:
            self._done_seq = ops[-1].seq
        for s in steps:
            tally(s, self.stats, self.progress, self._dir_mtime, self._touched)

    def _next_tmp(self) -> str:
        """A temp name in one of .tmp/'s subfolders (file creation slows in big folders)."""
        if not self._tmp_seq:
            self.sd.make_tmp()
        self._tmp_seq += 1
        return f"{self._tmp_seq % TMP_FANOUT:02x}/{self.run_id}-{self._tmp_seq}"

    def _too_large(self, step: Step) -> bool:
        """A file the target cannot hold is named before any byte is copied; its catalog
        row (if any) stays as it was."""
        e = step.change.entry
        if e is None or e.kind is not Kind.FILE or step.change.action not in _COPIES or \
                step.change.path in self.moved_to:
            return False
        why = too_large(self.sd.namer.profile, e.size)
        if why is not None:
            step.issue = Issue(step.change.path, "skipped", why)
        return why is not None

    def _too_long(self, step: Step) -> bool:
        """A path whose copy the drive cannot name (a name over its limit, or a whole path
        over PATH_MAX, in current/ or later in versions/) is skipped and named, never a
        failure of the run; its catalog row (if any) stays as it was."""
        ch = step.change
        if ch.entry is None or ch.action in _KEEPS:
            return False
        why = name_problem(self.sd, self.run_name, ch.path)
        if why is None:
            return False
        step.issue = Issue(ch.path, "skipped", why)
        new = self.moved_from.pop(ch.path, None)  # a move to or from it: a plain change
        old = self.moved_to.pop(ch.path, None)
        if new is not None:
            self.moved_to.pop(new, None)
        if old is not None:
            self.moved_from.pop(old, None)
        return True

    def _needs_worker(self, ch: Change) -> bool:
        e = ch.entry
        return (e is not None and e.kind is Kind.FILE and e.link_to is None
                and ch.action in (Action.NEW, Action.CHANGED, Action.CHECK)
                and ch.path not in self.moved_to)

    def _submit(self, chunk: list[tuple[Step, str]]) -> Future[list[CopyOutcome]]:
        if self._pool is None:
            self._pool = _pool(self.workers or COPY_WORKERS)
        tasks = []
        for step, tmp_name in chunk:
            ch = step.change
            assert ch.entry is not None
            check = ch.old.hash if ch.action is Action.CHECK and ch.old is not None else None
            tasks.append(CopyTask(self.src(ch.path),
                                  os.path.join(self.sd.tmp, os.fsencode(tmp_name)),
                                  ch.entry, check, not can_syncfs(),
                                  self.sd.namer.profile.holds))
        return self._pool.submit(copy_many, tasks)

    def _wait(self, futures: Chunks) -> None:
        """Collect the batch's copies in order and turn them into steps."""
        try:
            for fut, chunk in futures.items():
                outcomes = fut.result()
                self.progress.advance(0, sum(o.size for o in outcomes))
                for (step, tmp_name), outcome in zip(chunk, outcomes, strict=False):
                    self._record_copy(step, tmp_name, outcome)
        except BaseException:
            for other in futures:
                other.cancel()
            raise

    def _flush(self) -> None:
        if can_syncfs():
            syncfs(self.sd.tmp)

    # preparing steps -------------------------------------------------------------------

    def _record_copy(self, step: Step, tmp_name: str, o: CopyOutcome) -> None:
        """Turn a worker's outcome into the step's row, operation and issue."""
        ch, entry, old = step.change, step.change.entry, step.change.old
        assert entry is not None
        if o.kind == "target":
            raise target_failure(OSError(o.errno, o.message), ch.path)
        if o.kind == "unreadable":
            step.issue = Issue(ch.path, "skipped", o.message)
        if o.kind in ("gone", "unreadable"):
            return  # a file deleted since the scan is simply gone
        entry.xattrs = o.xattrs
        if o.kind == "same":
            assert old is not None
            step.record = to_record(entry, self.run_id, o.hash)
            step.op = PendingOp(0, "meta", ch.path)
            step.close = (old.id, False)
            return
        if not o.stable:
            step.issue = Issue(ch.path, "unstable",
                               "changed while being copied, twice; the second copy is kept")
        elif o.problems:
            step.issue = Issue(ch.path, "metadata", "; ".join(o.problems))
        step.record = to_record(entry, self.run_id, o.hash, o.before)
        step.record.size = o.size
        step.op = PendingOp(0, "put", ch.path, tmp_name)
        step.close = (old.id, True) if old is not None else None
        step.copied = o.size

    def _prepare_other(self, step: Step) -> None:
        """Main thread: folders, symlinks, specials, hard links, metadata, deletions."""
        ch, entry, old = step.change, step.change.entry, step.change.old
        if ch.action in (Action.UNCHANGED, Action.SKIPPED, Action.CARRIED):
            return
        if (ch.path in self.moved_from or ch.path in self.moved_to) and \
                self._prepare_move(step):
            return
        if ch.action is Action.DELETED:
            assert old is not None
            step.op = PendingOp(0, "rmdir" if old.kind is Kind.DIR else "remove", ch.path)
            step.close = (old.id, True)
            return
        assert entry is not None
        src = self.src(ch.path)
        try:
            if entry.kind is not Kind.SYMLINK or ch.action is Action.META:
                entry.xattrs = read_xattrs(src)
        except OSError as err:
            step.issue = Issue(ch.path, "skipped", err.strerror or str(err))
            return
        moved = ch.action is not Action.META
        step.close = (old.id, moved) if old is not None else None
        step.record = to_record(entry, self.run_id, old.hash if old is not None and
                                ch.action is Action.META else None)
        if ch.action is Action.META:
            step.op = PendingOp(0, "meta", ch.path)
        elif entry.kind is Kind.DIR:
            step.op = PendingOp(0, "mkdir", ch.path)
        elif entry.kind is Kind.SYMLINK:
            self._prepare_symlink(step, entry)
        elif entry.kind is Kind.FILE:  # a hard link to a file earlier in the set
            step.op = PendingOp(0, "link", ch.path, link_to=entry.link_to)
        else:
            step.issue = Issue(ch.path, "special", f"a {_SPECIAL[entry.kind]}: recorded, "
                               "not copied")
            if old is not None:
                step.op = PendingOp(0, "remove", ch.path)

    def _prepare_move(self, step: Step) -> bool:
        """A new file that is a deleted one moved: rename it on the target, copy nothing.

        Done at whichever of its two paths comes first; False if it is no longer a move
        (the source changed since the scan), so the change is applied as it stands.
        """
        path = step.change.path
        new = self.moved_from.get(path, path)
        old = self.moved_to.get(new, path)
        if new in self._moves_done:
            return True  # done at the other path
        if new != path and name_problem(self.sd, self.run_name, new) is not None:
            self.moved_from.pop(old, None)
            self.moved_to.pop(new, None)
            return False
        row = step.change.old if path == old else self.catalog.open_row(old)
        try:
            st = os.lstat(self.src(new))
            entry = entry_from_stat(new, st)
            entry.xattrs = read_xattrs(self.src(new))
        except OSError:
            entry = None
        if row is None or entry is None or (st.st_ino, st.st_size, st.st_mtime_ns) != (
                row.ino, row.size, row.mtime_ns):
            self.moved_from.pop(old, None)
            self.moved_to.pop(new, None)
            return False
        self._moves_done.add(new)
        step.record = to_record(entry, self.run_id, row.hash)
        step.close = (row.id, True)
        step.op = PendingOp(0, "move", new, link_to=old)
        return True

    def _prepare_symlink(self, step: Step, entry: Entry) -> None:
        assert entry.target is not None
        if not self.sd.namer.profile.symlinks:  # kept in the catalog only; restore makes it
            if step.change.old is not None:
                step.op = PendingOp(0, "remove", step.change.path)
            return
        tmp_name = self._next_tmp()
        tmp = os.path.join(self.sd.tmp, os.fsencode(tmp_name))
        try:
            os.symlink(entry.target, tmp)
        except OSError as err:
            raise target_failure(err, step.change.path) from err
        apply_metadata(tmp, entry, holds=self.sd.namer.profile.holds)
        step.op = PendingOp(0, "put", step.change.path, tmp_name)

    def _resolve_link(self, step: Step) -> None:
        rec = step.record
        if rec is None or rec.kind is not Kind.FILE:
            return
        if rec.link_to is None:
            if rec.hash is not None and rec.nlink > 1:  # only files others may link to:
                self._link_hash[rec.path] = rec.hash  # a map of every file grows with the run
            return
        known = self._link_hash.get(rec.link_to)
        if known is None:
            first = self.catalog.open_row(rec.link_to)
            known = first.hash if first is not None else None
        rec.hash = known

    # end of run ------------------------------------------------------------------------

    @property
    def wrote(self) -> bool:
        """Whether the run wrote anything to the target's files (besides the catalog):
        a copy, a rename, a folder, a folder's time."""
        return bool(self._tmp_seq or self._seq or self._rmdirs or self._touched)

    def _finish_dirs(self) -> None:
        """Give folders touched by this run the modification time of their source."""
        set_dir_times(self.sd, self._touched, self._dir_mtime, self.catalog.open_row)


def _pool(workers: int) -> Executor:
    """Worker processes where fork exists (no GIL between copies), else threads."""
    if can_fork():
        from concurrent.futures import ProcessPoolExecutor  # only a run that copies

        return ProcessPoolExecutor(workers, mp_context=child_context(),
                                   initializer=die_with_parent, initargs=(os.getpid(),))
    return ThreadPoolExecutor(workers)


_COPIES = (Action.NEW, Action.CHANGED, Action.CHECK)
_KEEPS = (Action.UNCHANGED, Action.SKIPPED, Action.CARRIED, Action.DELETED)

_SPECIAL = {Kind.FIFO: "named pipe (FIFO)", Kind.SOCKET: "socket",
            Kind.CHAR: "character device", Kind.BLOCK: "block device"}
