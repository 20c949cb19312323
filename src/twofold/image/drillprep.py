"""Ready a drill's scratch copy (never the image): kernel messages to the serial port, and
a one-shot marker that the booted system's init prints there, with a nonce per drill."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from twofold.fsinfo.extedit import (
    ExtEditError,
    ExtMounts,
    ext_exists,
    ext_is_dir,
    ext_mounts,
    ext_read,
    ext_write,
)
from twofold.fsinfo.parttable import PartitionTable

MARKER = "TWOFOLD-DRILL-UP"
#: appended to every `linux` line of GRUB's config in the scratch copy; the last console=
#: is /dev/console, so init's and an emergency shell's messages reach the serial port too
SERIAL_ARGS = "console=tty0 console=ttyS0,115200 loglevel=7"
GRUB_CONFIGS = ("/boot/grub/grub.cfg", "/grub/grub.cfg", "/boot/grub2/grub.cfg",
                "/grub2/grub.cfg")
UNIT = "twofold-drill.service"
_LINUX = re.compile(rb"^(\s*linux(?:efi)?\s+\S+.*?)\s*$", re.M)


@dataclass
class Prepared:
    """What was changed in the scratch copy, and the superblocks to watch."""

    nonce: str
    ext: dict[int, tuple[int, ExtMounts]] = field(default_factory=dict)  # part -> offset
    grub_configs: list[str] = field(default_factory=list)
    marker_by: str = ""  # "systemd unit", "rc.local", "" (none could be added)
    root: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def marker(self) -> str:
        """The text init prints on the serial port."""
        return f"{MARKER} {self.nonce}"

    def mounted(self, scratch: Path) -> int | None:
        """A partition whose superblock shows a mount since the drill began."""
        for index, (offset, before) in self.ext.items():
            now = ext_mounts(scratch, offset)
            if now is not None and now != before:
                return index
        return None


def _serial_grub(scratch: Path, offset: int, prep: Prepared, index: int) -> None:
    for path in GRUB_CONFIGS:
        cfg = ext_read(scratch, offset, path)
        if cfg is None:
            continue
        new = _LINUX.sub(lambda m: m.group(1) + b" " + SERIAL_ARGS.encode(), cfg)
        if new != cfg:
            ext_write(scratch, offset, {path: (new, 0o644)})
            prep.grub_configs.append(f"partition {index}: {path}")


def _marker(scratch: Path, offset: int, prep: Prepared) -> None:
    line = f'echo "{prep.marker}" > /dev/ttyS0'
    systemd = any(ext_exists(scratch, offset, p) for p in
                  ("/usr/lib/systemd/systemd", "/lib/systemd/systemd"))
    if systemd and ext_is_dir(scratch, offset, "/etc/systemd/system"):
        unit = ("[Unit]\nDescription=twofold drill marker (in the drill's scratch copy only)\n"
                "\n[Service]\nType=oneshot\n"
                f"ExecStart=/bin/sh -c '{line}'\n\n[Install]\nWantedBy=multi-user.target\n")
        wants = "/etc/systemd/system/multi-user.target.wants"
        ext_write(scratch, offset, {f"/etc/systemd/system/{UNIT}": (unit.encode(), 0o644)},
                  links={f"{wants}/{UNIT}": f"/etc/systemd/system/{UNIT}"}, dirs=[wants])
        prep.marker_by = "systemd unit"
    elif not ext_exists(scratch, offset, "/etc/rc.local"):
        ext_write(scratch, offset, {"/etc/rc.local": (f"#!/bin/sh\n{line}\n".encode(), 0o755)})
        prep.marker_by = "rc.local"
    else:
        prep.notes.append("the system has its own /etc/rc.local and no systemd: "
                          "no init marker was added, the login prompt stands for init")


def prepare(scratch: Path, table: PartitionTable, nonce: str) -> Prepared:
    """Change the scratch copy for the drill; see Prepared."""
    prep = Prepared(nonce)
    for p in table.partitions:
        if p.container:
            continue
        mounts = ext_mounts(scratch, p.start)
        if mounts is None:
            continue
        prep.ext[p.index] = (p.start, mounts)
        try:
            _serial_grub(scratch, p.start, prep, p.index)
            if prep.root is None and ext_exists(scratch, p.start, "/etc/os-release"):
                prep.root = p.index
                _marker(scratch, p.start, prep)
        except ExtEditError as e:
            prep.notes.append(f"partition {p.index} could not be prepared: {e}")
    for index, (offset, _) in list(prep.ext.items()):  # after the edits: only boots count
        prep.ext[index] = (offset, ext_mounts(scratch, offset) or ExtMounts(0, 0))
    if not prep.grub_configs:
        prep.notes.append("no GRUB config on an ext2/3/4 partition: kernel messages may "
                          "not reach the serial port, stages are judged by what does")
    if prep.root is None:
        prep.notes.append("no root file system (ext2/3/4 with /etc/os-release) was found: "
                          "no init marker was added")
    return prep
