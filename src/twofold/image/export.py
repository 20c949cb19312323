"""`export`: write an image as one virtual-disk file (raw, VHD, VHDX, qcow2, VMDK), streamed
from the store through a read-only NBD socket into `qemu-img convert`, unused ranges never
read nor written; a partial file is removed when anything stops the export."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import suppress
from dataclasses import dataclass

from twofold.chunks.workers import WORKERS
from twofold.core.clock import Clock
from twofold.core.errors import TargetFullError, TwofoldError, UsageError
from twofold.core.progress import Progress
from twofold.image.errors import ImageDamaged, ImageRefused
from twofold.image.export_esp import EspPatch, fallback_patch
from twofold.image.export_nbd import NbdServer
from twofold.image.manifest import Manifest, chunk_spans
from twofold.image.reader import ImageReader
from twofold.image.repo import Target, load_manifest, open_store
from twofold.image.verify import record_bad

FORMATS: dict[str, tuple[str, list[str]]] = {
    "raw": ("raw", []),
    "qcow2": ("qcow2", []),
    "vhd": ("vpc", ["-o", "subformat=dynamic,force_size=on"]),
    "vhdx": ("vhdx", ["-o", "subformat=dynamic"]),
    "vmdk": ("vmdk", ["-o", "subformat=monolithicSparse"]),
}
"""--format -> (qemu-img's format name, its options). VHD keeps the exact size
(force_size) instead of rounding it up to a CHS geometry."""
MERGE_GAP = 64 << 10
"""Unused stretches shorter than this inside used ones are read too (as zeros): fewer
round trips, and qemu-img still writes no zeros (it detects them)."""
_POLL = 0.25


class ExportFailed(TwofoldError):
    """qemu-img stopped for a reason of its own (its message is shown)."""


@dataclass
class ExportResult:
    """What an export did."""

    image: str
    dest: str
    format: str
    size: int  # bytes of the virtual disk
    file_bytes: int = 0  # bytes the file takes on its drive
    bytes_read: int = 0  # image bytes streamed from the store
    boot_note: str = ""  # the UEFI fallback loader: added, or what the user must do
    seconds: float = 0.0


class _ImageSource:
    """The image's disk as a BlockSource: its bytes from the store (the ESP's from the
    patch when the fallback loader was added), its used ranges."""

    def __init__(self, reader: ImageReader, m: Manifest, patch: EspPatch | None) -> None:
        self.reader = reader
        self.size = m.size
        self.patch = patch
        ranges = used_ranges(m)
        if patch is not None:
            ranges = [r for s, e in ranges for r in ((s, min(e, patch.start)),
                                                     (max(s, patch.end), e)) if r[0] < r[1]]
            ranges = sorted(ranges + patch.data_ranges())
        self.allocated = ranges

    def read(self, offset: int, length: int) -> list[memoryview]:
        p = self.patch
        end = offset + length
        if p is None or end <= p.start or offset >= p.end:
            return self.reader.views(offset, length)
        lo, hi = max(offset, p.start), min(end, p.end)
        return [*self.reader.views(offset, lo - offset),
                memoryview(os.pread(p.fd, hi - lo, lo)), *self.reader.views(hi, end - hi)]


def used_ranges(m: Manifest, gap: int = MERGE_GAP) -> list[tuple[int, int]]:
    """Sorted (start, end) byte ranges of the disk that stored chunks fill, joined where
    less than `gap` apart."""
    spans = sorted((a.start + o, a.start + o + n) for a in m.areas if a.files is None
                   for ref, pieces in chunk_spans(a, m.chunk_size) if ref.id is not None
                   for o, n in pieces)
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if out and start - out[-1][1] < gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def qemu_img() -> str:
    """The path of qemu-img; ImageRefused naming the package when it is missing."""
    found = shutil.which("qemu-img")
    if found is None:
        raise ImageRefused("qemu-img is not installed: export writes through it",
                           "install it (Debian and Ubuntu: apt install qemu-utils)")
    return found


def _check_dest(dest: str) -> None:
    if os.path.lexists(dest):
        raise UsageError(f"{dest} already exists", "name a new file, or delete that one first")
    folder = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(folder):
        raise UsageError(f"the folder {folder} does not exist", "create it, or name another")


def _check_image(store_has: set[bytes], m: Manifest) -> None:
    """ImageRefused for an image with file-level areas; ImageDamaged when a chunk it needs
    is not in the store (before anything is written)."""
    live = [a.label for a in m.areas if a.files is not None]
    if live:
        raise ImageRefused(
            f"image {m.name} holds {', '.join(live)} taken at file level (a live image): "
            "its blocks do not exist until a restore makes its file system anew",
            f"restore it to a file first (twofold image restore STORE {m.name} --to "
            "disk.raw), then convert that file (qemu-img convert -O FORMAT disk.raw FILE)")
    missing = sorted(m.chunk_ids() - store_has)
    if missing:
        raise ImageDamaged(
            f"image {m.name} needs {len(missing)} chunk(s) the store does not hold, the "
            f"first {missing[0].hex()}",
            "nothing was written; `twofold image verify` lists all damage, and `twofold "
            "image verify --heal --from OTHER_STORE` (or --source DISK) can mend it")


def export(target: Target, image: str, fmt: str, dest: str, progress: Progress,
           clock: Clock) -> ExportResult:
    """Write `image` from the store at `target` to the new file `dest` in format `fmt`
    (a key of FORMATS)."""
    started = clock.now_ns()
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    tool = qemu_img()
    _check_dest(dest)
    store = open_store(target)
    m = load_manifest(store.objects, image)
    _check_image({cid for cid in m.chunk_ids() if store.location(cid) is not None}, m)
    reader = ImageReader(store, m)
    result = ExportResult(m.name, dest, fmt, m.size)
    with tempfile.TemporaryDirectory(prefix="twofold-export-") as tmp, \
            fallback_patch(m, reader, tmp) as (patch, result.boot_note):
        source = _ImageSource(reader, m, patch)
        try:
            result.bytes_read = _through_qemu_img(source, tool, fmt, dest,
                                                  os.path.join(tmp, "nbd.sock"), progress)
        except BaseException as err:
            with suppress(FileNotFoundError):
                os.unlink(dest)
            if isinstance(err, ImageDamaged):
                record_bad(store, clock)  # the next create stores those chunks again
                err.hint = (err.hint + "; " if err.hint else "") + \
                    "the export stopped and its partial file was removed"
            raise
    result.file_bytes = os.stat(dest).st_blocks * 512
    result.seconds = (clock.now_ns() - started) / 1e9
    return result


def _through_qemu_img(source: _ImageSource, tool: str, fmt: str, dest: str, sock: str,
                      progress: Progress) -> int:
    """Serve the disk on `sock` and let qemu-img write `dest`; the bytes it read."""
    name, options = FORMATS[fmt]
    progress.phase(f"exporting ({fmt})", total_bytes=sum(e - s for s, e in source.allocated))
    server = NbdServer(source, sock, WORKERS)
    server.start()
    try:
        _convert(server, [tool, "convert", "-W", "-f", "raw", "-O", name, *options,
                          f"nbd+unix:///?socket={sock}", dest], progress)
    finally:
        server.stop()
    return server.served


def _convert(server: NbdServer, argv: list[str], progress: Progress) -> None:
    """Run qemu-img, reporting the bytes it read; the error of what stopped it."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    shown = 0
    try:
        while True:
            try:
                _, errors = proc.communicate(timeout=_POLL)
                break
            except subprocess.TimeoutExpired:
                pass
            finally:
                now = server.served
                progress.advance(nbytes=now - shown)
                shown = now
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode == 0:
        return
    if server.failure is not None:
        raise server.failure
    text = errors.decode(errors="replace").strip()
    dest = argv[-1]
    if "No space left" in text:
        raise TargetFullError(
            f"the drive of {dest} is full: the export stopped and its partial file was "
            "removed", "free some space or export to a larger drive")
    raise ExportFailed(f"qemu-img could not write {dest}: {text}",
                       "the partial file was removed")
