"""`restore`: write an image (or one partition of it) to a device or file, checking every
chunk before it is written, then move a GPT's backup copy to a larger disk's end."""

from __future__ import annotations

import fcntl
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace

from twofold.chunks.chunkstore import ChunkStore
from twofold.chunks.workers import WORKERS
from twofold.core.clock import Clock
from twofold.core.errors import UsageError
from twofold.core.progress import Progress
from twofold.fsinfo.blockio import FileReader, PieceReadError, read_pieces
from twofold.fsinfo.efiboot import ensure_fallback_loader
from twofold.fsinfo.fsparams import fs_type, grow_fs
from twofold.fsinfo.gptgrow import grow_gpt
from twofold.fsinfo.loopmount import loop_device
from twofold.fsinfo.wipe import wipe_signatures
from twofold.image.errors import ImageDamaged, ImageRefused
from twofold.image.filerestore import FilesRestored, refuse_attached_uuid, restore_files
from twofold.image.manifest import Area, Extent, Manifest, chunk_spans
from twofold.image.relayout import grown_layout, min_size, smaller_layout, write_table
from twofold.image.repo import Target, load_manifest, open_store
from twofold.image.source import refuse_if_busy, related_devices
from twofold.image.verify import check_chunks, record_bad

_ZEROS = bytes(1 << 20)
_BLKRRPART = 0x125F  # Linux ioctl: re-read the partition table


@dataclass
class RestoreResult:
    """What a restore did."""

    image: str
    dest: str
    size: int  # bytes the image (or partition) spans
    dest_size: int
    created: bool = False
    bytes_written: int = 0
    chunks: int = 0
    gpt_moved: bool = False
    bytes_checked: int = 0  # read back from the destination after writing
    seconds: float = 0.0
    wiped: list[str] = field(default_factory=list)  # old signatures erased ("sdb: gpt, PMBR")
    boot_note: str = ""  # the UEFI fallback loader: added, or what the user must do
    files: list[FilesRestored] = field(default_factory=list)  # areas made anew at file level
    relaid: dict[int, int] = field(default_factory=dict)  # laid out again: partition -> size
    not_grown: list[str] = field(default_factory=list)  # --grow: file systems kept their size


def _select(m: Manifest, partition: int | None) -> tuple[list[Area], int, int]:
    """The areas to write, the offset to add to their starts, and the bytes needed."""
    if partition is None:
        return m.areas, 0, m.size
    if m.kind != "disk":
        raise UsageError(f"image {m.name} is of one volume; it has no partition {partition}",
                         "restore it without --partition")
    for area in m.areas:
        if area.role == "partition" and area.number == partition:
            return [area], -area.start, area.size
    numbers = ", ".join(str(a.number) for a in m.areas if a.role == "partition")
    raise UsageError(f"image {m.name} has no partition {partition}",
                     f"its partitions: {numbers}")


def _smaller_partition(area: Area, dest: str, needed: int) -> tuple[list[Area], int]:
    """A file-level partition restored alone onto a smaller partition or file: made at
    that size when its data fits, else ImageRefused with the size needed."""
    with FileReader(dest) as peek:
        size = peek.size
    if size >= needed:
        return [area], needed
    least = min_size(area)
    if size < least:
        raise ImageRefused(f"{dest} is too small: {size:,} bytes, {area.label} needs at least "
                           f"{least:,} for its data ({least - size:,} more)",
                           "restore to a partition or file at least that large")
    return [replace(area, size=size)], size


def _open_dest(dest: str, needed: int) -> tuple[int, int, bool]:
    """(fd, size, created): the destination opened for writing, made sparse if new."""
    if not os.path.exists(dest):
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        os.ftruncate(fd, needed)
        return fd, needed, True
    mode = os.stat(dest).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        raise ImageRefused(f"{dest} is neither a device nor a file")
    refuse_if_busy(dest, writable_only=False, action="restore to")
    fd = os.open(dest, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    size = os.lseek(fd, 0, os.SEEK_END)
    if size < needed:
        os.close(fd)
        raise ImageRefused(
            f"{dest} is too small: {size:,} bytes, the image needs {needed:,} "
            f"({needed - size:,} more)", "restore to a disk or file at least that large")
    return fd, size, False


def restore(target: Target, image: str, dest: str, partition: int | None,
            progress: Progress, clock: Clock, readback: bool = True,
            grow: bool = False) -> RestoreResult:
    """Write `image` from the store at `target` to `dest` (or its partition N alone);
    with `readback`, read every written chunk back from the device and check its hash;
    with `grow`, the last partition takes the room of a larger disk."""
    started = clock.now_ns()
    store = open_store(target)
    m = load_manifest(store.objects, image)
    areas, shift, needed = _select(m, partition)
    layout = None
    if partition is not None and areas[0].files is not None and os.path.exists(dest):
        areas, needed = _smaller_partition(areas[0], dest, needed)
    if partition is None and m.kind == "disk" and os.path.exists(dest):
        with FileReader(dest) as peek:
            if peek.size < m.size:  # a smaller disk: laid out again when the data fits
                layout = smaller_layout(m, dest, peek.size)
                needed = peek.size
            elif grow and peek.size > m.size:
                layout = grown_layout(m, peek.size)
    grown = {a.number for a in m.areas if layout and a.number in layout
             and a.files is None and layout[a.number][1] > a.size}
    if layout is not None:
        first = min(start for start, _ in layout.values())
        areas = [replace(a, start=layout[a.number][0], size=layout[a.number][1])
                 if a.role == "partition" and a.number is not None else a for a in areas]
    places: dict[bytes, list[tuple[Area, list[Extent]]]] = {}
    zero_pieces: list[tuple[Area, list[Extent]]] = []
    lengths: dict[bytes, int] = {}
    for area in areas:
        for ref, pieces in chunk_spans(area, m.chunk_size):
            if layout is not None and area.role == "disk" and \
                    pieces[-1][0] + pieces[-1][1] > first:
                continue  # the old table's gaps past the first partition: laid out anew
            if ref.id is None:
                zero_pieces.append((area, pieces))
            else:
                places.setdefault(ref.id, []).append((area, pieces))
                lengths[ref.id] = ref.length
    file_ids = {cid: a for a in areas for _n, cid in a.file_chunks()}
    missing = [cid for cid in [*places, *file_ids] if store.location(cid) is None]
    if missing:
        area, pieces = places[missing[0]][0] if missing[0] in places \
            else (file_ids[missing[0]], [(0, 0)])
        bad = sum(1 for cid in missing if store.known_bad(cid))
        raise ImageDamaged(
            f"image {m.name} needs {len(missing)} chunk(s) the store does not hold"
            + (f" ({bad} found damaged before)" if bad else "") + ", the first for "
            f"{area.label} at byte {area.start + pieces[0][0]}",
            "nothing was written; `twofold image verify` lists all damage, and `twofold "
            "image verify --heal --from OTHER_STORE` (or --source DISK) can mend it")
    refuse_attached_uuid(areas, dest, {f"/dev/{n}" for n in related_devices(dest).values()}
                         if os.path.exists(dest) else set())
    fd, dest_size, created = _open_dest(dest, needed)
    result = RestoreResult(m.name, dest, needed, dest_size, created)
    try:
        if stat.S_ISBLK(os.fstat(fd).st_mode):
            progress.phase("wiping old signatures")
            result.wiped = _wipe(dest, fd, dest_size)
        progress.phase("restoring", total_bytes=sum(
            lengths[c] * len(p) for c, p in places.items()))
        if not created:
            for area, pieces in zero_pieces:
                for offset, length in pieces:
                    _write_zeros(fd, shift + area.start + offset, length)

        def done(cid: bytes, data: bytes | None, problem: str) -> None:
            if data is None:
                area, pieces = places[cid][0]
                first = area.start + pieces[0][0]
                raise ImageDamaged(
                    f"image {m.name} is damaged in {area.label}, bytes {first}-"
                    f"{area.start + pieces[-1][0] + pieces[-1][1]}: {problem}",
                    f"the restore stopped; {dest} is incomplete. Restore another image "
                    "(twofold image list), or mend this one with twofold image verify "
                    "--heal (--from OTHER_STORE or --source DISK)")
            view = memoryview(data)
            for area, pieces in places[cid]:
                pos = 0
                for offset, length in pieces:
                    os.pwrite(fd, view[pos:pos + length], shift + area.start + offset)
                    pos += length
                result.bytes_written += pos
                progress.advance(nbytes=pos)
            result.chunks += 1

        try:
            check_chunks(store, list(places), progress, done)
        except ImageDamaged:
            record_bad(store, clock)  # the next create stores those chunks again
            raise
        for area in areas:
            if area.files is not None:
                os.fsync(fd)
                got = restore_files(store, area, dest, shift + area.start, area.size, progress)
                result.files.append(got)
                result.bytes_written += got.file_bytes
        if readback:
            os.fsync(fd)
            result.bytes_checked = _read_back(store, dest, fd, shift, places, progress)
        if layout is not None:
            os.fsync(fd)
            progress.phase("partition table")
            write_table(m, dest, layout)
            result.relaid = {n: s for n, (_start, s) in layout.items()}
            for area in areas:
                if area.number in grown:
                    with loop_device(dest, area.start, area.size) as dev:
                        kind = fs_type(dev)
                        if kind is None or not grow_fs(kind, dev):
                            result.not_grown.append(f"partition {area.number} ({kind})")
        if partition is None and m.table and m.table.get("kind") == "gpt" \
                and dest_size > m.size and layout is None:
            progress.phase("partition table")
            with FileReader(dest) as reader:
                writes = grow_gpt(reader, dest_size, m.table.get("sector_size"))
            for offset, data in writes:
                os.pwrite(fd, data, offset)
            result.gpt_moved = True
        os.fsync(fd)
        if partition is None:
            result.boot_note = _fallback_loader(dest, progress)
            os.fsync(fd)
        if partition is None and stat.S_ISBLK(os.fstat(fd).st_mode):
            with suppress(OSError):  # the kernel re-reads the new table (busy: next boot)
                fcntl.ioctl(fd, _BLKRRPART)
    finally:
        os.close(fd)
    result.seconds = (clock.now_ns() - started) / 1e9
    return result


def _wipe(dest: str, fd: int, size: int) -> list[str]:
    """Erase the signatures of the device's old partitions and its own (fsinfo/wipe.py)
    before the image is written: nothing of the old layout outlives the restore."""
    own = os.fstat(fd).st_rdev
    parts = [f"/dev/{name}" for dev, name in related_devices(dest).items() if dev != own]
    return wipe_signatures(dest, sorted(parts), fd, size)


def _fallback_loader(dest: str, progress: Progress) -> str:
    """Firmware boot entries do not travel with a disk: make sure its ESP holds the
    fallback loader (copied from the distribution's own) or say what the user must do."""
    progress.phase("boot loader")
    return ensure_fallback_loader(dest).note


def _write_zeros(fd: int, offset: int, length: int) -> None:
    while length > 0:
        n = min(length, len(_ZEROS))
        os.pwrite(fd, _ZEROS[:n], offset)
        offset += n
        length -= n


def _read_back(store: ChunkStore, dest: str, fd: int, shift: int,
               places: dict[bytes, list[tuple[Area, list[Extent]]]], progress: Progress) -> int:
    """Read every written chunk back (past the page cache where the OS allows) and check
    it against its id; ImageDamaged naming the first byte range that differs."""
    with suppress(OSError, AttributeError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    todo = sorted(((shift + area.start + pieces[0][0], cid, area, pieces)
                   for cid, where in places.items() for area, pieces in where),
                  key=lambda t: t[0])
    progress.phase("checking", total_bytes=sum(n for *_, p in todo for _, n in p))

    def same(item: tuple[int, bytes, Area, list[Extent]]) -> tuple[str | None, int]:
        """(None, bytes checked) when the chunk reads back whole and right, else what is
        wrong, with {where} for the area and bytes written."""
        _first, cid, area, pieces = item
        try:
            data = read_pieces(reader, shift + area.start, pieces)
        except PieceReadError as err:
            if err.cause is None:
                return f"ended at byte {err.offset}, after writing {{where}}", 0
            return ("could not be read back after writing {where}: "
                    f"{err.cause.strerror or err.cause} at byte {err.offset}"), 0
        if store.id_of(data) != cid:
            return "does not hold what was written to {where}", 0
        return None, len(data)

    checked = 0
    reader = FileReader(dest)
    try:
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="twofold-readback") as pool:
            for item, (wrong, n) in zip(todo, pool.map(same, todo), strict=True):
                if wrong is not None:
                    first, _cid, area, pieces = item
                    last = shift + area.start + pieces[-1][0] + pieces[-1][1]
                    where = f"{area.label}, bytes {first}-{last}"
                    raise ImageDamaged(f"{dest} {wrong.replace('{where}', where)}",
                                       "the destination may be failing; try another")
                checked += n
                progress.advance(nbytes=n)
    finally:
        reader.close()
    return checked
