"""The UEFI fallback loader: a restored disk has no firmware boot entry, so its ESP must
hold \\EFI\\BOOT\\BOOTX64.EFI; copy it from the distribution's loader when it is missing.

The ESP is read and written with mtools on the disk (file or device) at the partition's
offset, so nothing is mounted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from twofold.fsinfo.blockio import FileReader
from twofold.fsinfo.parttable import parse_table

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
FALLBACK = "EFI/BOOT/BOOTX64.EFI"
#: what a user must do when twofold cannot add the fallback loader itself
MANUAL = ("boot the rescue media, mount the restored system and run "
          "`grub-install --removable` (or `efibootmgr --create` for its loader) in it")


@dataclass
class FallbackResult:
    """What was found on the ESP and what was done."""

    status: str  # present, added, missing, no-esp, unknown
    esp: int | None = None  # partition number
    copied: list[str] = field(default_factory=list)  # "src -> dst" paths on the ESP
    note: str = ""


def _esp_offset(disk: str) -> tuple[int, int] | None:
    with FileReader(disk) as reader:
        table = parse_table(reader)
    for p in table.partitions:
        if table.kind == "gpt" and p.type.upper() == ESP_TYPE:
            return p.index, p.start
        if table.kind == "mbr" and p.type.lower() == "ef":
            return p.index, p.start
    return None


def _win(path: str) -> str:
    """A path on the ESP as firmware and Windows write it: \\EFI\\debian\\shimx64.efi."""
    return "\\" + path.replace("/", "\\")


def _mtools(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(args, capture_output=True, text=True, check=False, env=env)


def esp_files(disk: str, offset: int) -> list[str]:
    """Every file path on the ESP at `offset` of `disk`, as "EFI/debian/grubx64.efi"."""
    got = _mtools(["mdir", "-b", "-/", "-i", f"{disk}@@{offset}", "::/"])
    if got.returncode != 0:
        return []
    return [ln.strip().removeprefix("::/") for ln in got.stdout.splitlines()
            if ln.strip().startswith("::/") and not ln.strip().endswith("/")]


def _pick(files: list[str]) -> list[tuple[str, str]]:
    """(source, destination) copies that make the fallback loader from a vendor's."""
    by_lower = {f.lower(): f for f in files}
    vendors = sorted({f.split("/")[1] for f in files
                      if f.lower().startswith("efi/") and f.count("/") == 2
                      and f.split("/")[1].lower() != "boot"})
    for v in sorted(vendors, key=lambda v: (v.lower() != "debian", v.lower())):
        shim = by_lower.get(f"efi/{v.lower()}/shimx64.efi")
        grub = by_lower.get(f"efi/{v.lower()}/grubx64.efi")
        if shim and grub:  # shim loads grubx64.efi (and mmx64.efi) from its own folder
            copies = [(shim, FALLBACK), (grub, "EFI/BOOT/grubx64.efi")]
            mm = by_lower.get(f"efi/{v.lower()}/mmx64.efi")
            return copies + ([(mm, "EFI/BOOT/mmx64.efi")] if mm else [])
        if grub:
            return [(grub, FALLBACK)]
    return []


def ensure_fallback_loader(disk: str) -> FallbackResult:
    """Make sure the ESP of `disk` holds \\EFI\\BOOT\\BOOTX64.EFI; see FallbackResult."""
    found = _esp_offset(disk)
    if found is None:
        return FallbackResult("no-esp")
    index, offset = found
    if shutil.which("mdir") is None or shutil.which("mcopy") is None:
        return FallbackResult("unknown", index, note=(
            "mtools is not installed, so the UEFI fallback loader \\EFI\\BOOT\\BOOTX64.EFI "
            "was not checked (apt install mtools)"))
    files = esp_files(disk, offset)
    if any(f.lower() == FALLBACK.lower() for f in files):
        return FallbackResult("present", index)
    copies = _pick(files)
    if not copies:
        return FallbackResult("missing", index, note=(
            f"the ESP (partition {index}) has no \\EFI\\BOOT\\BOOTX64.EFI and no known "
            f"loader to copy there, so UEFI firmware may not start this disk: {MANUAL}"))
    image = f"{disk}@@{offset}"
    with tempfile.TemporaryDirectory(prefix="twofold-esp-") as tmp:
        _mtools(["mmd", "-i", image, "::/EFI/BOOT"])  # may exist already
        for src, dst in copies:
            local = Path(tmp) / "f"
            got = _mtools(["mcopy", "-n", "-i", image, f"::/{src}", str(local)])
            if got.returncode == 0:
                got = _mtools(["mcopy", "-o", "-i", image, str(local), f"::/{dst}"])
            if got.returncode != 0:
                return FallbackResult("missing", index, note=(
                    f"could not copy {_win(src)} to {_win(dst)} on the ESP "
                    f"({got.stderr.strip()}): {MANUAL}"))
            local.unlink()
    return FallbackResult("added", index, [f"{s} -> {d}" for s, d in copies], note=(
        f"added the UEFI fallback loader \\EFI\\BOOT\\BOOTX64.EFI (from {_win(copies[0][0])}),"
        " "
        "since a restored disk has no firmware boot entry"))
