"""The UEFI fallback loader for an exported disk, as restore adds it: the table and the ESP
(their used blocks only) are restored into a sparse temporary file, fsinfo/efiboot.py adds
\\EFI\\BOOT\\BOOTX64.EFI there when it is missing, and the export then serves the ESP's
bytes from that file. A virtual machine has no firmware boot entry for the disk either."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from twofold.fsinfo.efiboot import ESP_TYPE, ensure_fallback_loader
from twofold.image.manifest import Area, Manifest, chunk_spans
from twofold.image.reader import ImageReader


@dataclass
class EspPatch:
    """The ESP's bytes [start, end) of the disk, served from `fd` (a sparse file of the
    disk's size)."""

    start: int
    end: int
    fd: int

    def data_ranges(self) -> list[tuple[int, int]]:
        """(start, end) of the ranges of the ESP that hold data in the file."""
        out = []
        pos = self.start
        while pos < self.end:
            try:
                first = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            if first >= self.end:
                break
            pos = min(self.end, os.lseek(self.fd, first, os.SEEK_HOLE))
            out.append((first, pos))
        return out


def esp_area(m: Manifest) -> Area | None:
    """The image's EFI system partition taken as blocks, if it has one."""
    for a in m.areas:
        if a.role == "partition" and a.files is None and (
                a.type.upper() == ESP_TYPE or a.type.lower() in ("ef", "0xef")):
            return a
    return None


@contextmanager
def fallback_patch(m: Manifest, reader: ImageReader, folder: str
                   ) -> Iterator[tuple[EspPatch | None, str]]:
    """(an EspPatch when the image's ESP lacked the fallback loader and one was added in
    a temporary file in `folder` (removed afterwards), else None; what the user should
    know about booting it, as restore says it)."""
    esp = esp_area(m)
    if esp is None or m.kind != "disk":
        yield None, ""
        return
    path = os.path.join(folder, "esp.raw")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.ftruncate(fd, m.size)
        for area in (a for a in m.areas if a.role == "disk" or a is esp):
            for ref, pieces in chunk_spans(area, m.chunk_size):
                if ref.id is not None:
                    for offset, length in pieces:
                        start = area.start + offset
                        os.pwrite(fd, reader.read(start, length), start)
        found = ensure_fallback_loader(path)
        patch = EspPatch(esp.start, esp.start + esp.size, fd) if found.status == "added" \
            else None
        yield patch, found.note
    finally:
        os.close(fd)
        os.unlink(path)
