"""Small bootable test disks made from Debian packages, cached by what they are made of.

A disk holds GRUB (BIOS on MBR, BIOS on GPT with a BIOS boot partition, or UEFI with an
ESP), a /boot partition with Debian's cloud kernel (NVMe and ext4 built in, so no
initramfs), and a root file system whose /init (busybox) prints a marker on the serial
port, runs /etc/rc.local when present, and waits at a login prompt. No loop device is
needed: sfdisk on a file, mkfs.ext4 -d and mkfs.vfat + mtools on partition files, then
the partitions and GRUB's boot code are written into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from .drives import run, tool

CACHE = Path(os.environ.get("TWOFOLD_TEST_CACHE",
                            Path.home() / ".cache" / "twofold-tests"))
KERNEL_PACKAGE = "linux-image-cloud-amd64"
KINDS = ("bios-mbr", "bios-gpt", "uefi")
SIGNED = "uefi-signed"  # Debian's signed shim and GRUB: boots with Secure Boot on
RECIPE = "5"  # bump when the layout below changes: cached disks are rebuilt
MIB = 1 << 20
GRUB_PC = Path("/usr/lib/grub/i386-pc")
GRUB_EFI = Path("/usr/lib/grub/x86_64-efi")
SIGNED_FILES = {  # on the ESP in \EFI\debian: from shim-signed, shim-helpers-amd64-signed,
    "shimx64.efi": Path("/usr/lib/shim/shimx64.efi.signed"),  # grub-efi-amd64-signed
    "mmx64.efi": Path("/usr/lib/shim/mmx64.efi.signed"),
    "grubx64.efi": Path("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
}
GRUB_MODULES = ["part_msdos", "part_gpt", "ext2", "fat", "normal", "linux", "configfile",
                "search", "search_fs_uuid", "echo", "test", "boot"]
INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
/bin/busybox hostname twofold-test
echo "TWOFOLD-TEST-INIT up, root $(/bin/busybox cat /etc/marker-id)"
[ -x /etc/rc.local ] && /etc/rc.local
[ -e /etc/no-getty ] && exec /bin/busybox sleep 100000  # no login prompt: a screen only
exec /bin/busybox getty 115200 ttyS0
"""


@dataclass(frozen=True)
class BootDisk:
    """A cached bootable disk file and what identifies its root file system."""

    path: Path
    kind: str
    marker: str  # printed by /init: "TWOFOLD-TEST-INIT up, root <marker>"
    size: int
    root_partition: int  # its number in the table (for damage tests)

    @property
    def firmware(self) -> str:
        """bios or uefi."""
        return "bios" if self.kind.startswith("bios") else "uefi"


def need_tools() -> None:
    """Skip unless this machine has what building a test disk takes."""
    for name in ("sfdisk", "mkfs.ext4", "grub-mkimage", "busybox", "apt-get", "dpkg-deb",
                 "qemu-system-x86_64", "mkfs.vfat", "mcopy", "mmd"):
        tool(name)
    if not (GRUB_PC / "boot.img").is_file():
        pytest.skip("GRUB for BIOS is not installed (Debian package grub-pc-bin)")
    if not (GRUB_EFI / "linux.mod").is_file():
        pytest.skip("GRUB for UEFI is not installed (Debian package grub-efi-amd64-bin)")


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _kernel_names() -> list[str]:
    deps = subprocess.run(["apt-cache", "depends", KERNEL_PACKAGE], capture_output=True,
                          text=True, check=False).stdout
    return [ln.split(":", 1)[1].strip() for ln in deps.splitlines()
            if ln.strip().startswith("Depends: linux-image-")]


def _kernel_deb() -> Path:
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob("linux-image-*-cloud-amd64_*.deb"))
    if found:
        return found[-1]
    names = _kernel_names()
    if not names and os.geteuid() == 0:  # a machine whose package lists were cleaned
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        names = _kernel_names()
    if not names:
        pytest.skip(f"apt knows no {KERNEL_PACKAGE} (needed for a test kernel)")
    cached = sorted(Path("/var/cache/apt/archives").glob(f"{names[0]}_*.deb"))
    if cached:
        shutil.copyfile(cached[-1], debs / cached[-1].name)
        return debs / cached[-1].name
    got = subprocess.run(["apt-get", "download", names[0]], cwd=debs, capture_output=True,
                         text=True, check=False)
    found = sorted(debs.glob("linux-image-*-cloud-amd64_*.deb"))
    if got.returncode != 0 or not found:
        pytest.skip(f"could not download {names[0]}: {got.stderr.strip()[-300:]}")
    return found[-1]


def kernel() -> Path:
    """Debian's cloud kernel (vmlinuz), extracted from its package once and cached."""
    deb = _kernel_deb()
    out = CACHE / "kernel" / _sha(deb)[:16] / "vmlinuz"
    if not out.is_file():
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            run("dpkg-deb", "-x", deb, tmp)
            found = sorted(Path(tmp, "boot").glob("vmlinuz-*"))
            assert found, f"{deb} holds no /boot/vmlinuz-*"
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found[0], out.with_suffix(".part"))
            os.replace(out.with_suffix(".part"), out)
    return out


def _mkext4(path: Path, content: Path, size_mib: int, label: str,
            fs_uuid: str | None = None) -> None:
    run("mkfs.ext4", "-q", "-F", "-L", label, "-E", "root_owner=0:0", "-d", content,
        *(["-U", fs_uuid] if fs_uuid else []), path, f"{size_mib}M")


def _rootfs(work: Path, marker: str, size_mib: int) -> Path:
    tree = work / "root"
    for d in ("bin", "dev", "proc", "sys", "etc", "tmp"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    busybox = shutil.which("busybox")
    assert busybox is not None
    shutil.copyfile(busybox, tree / "bin" / "busybox")
    (tree / "bin" / "busybox").chmod(0o755)
    (tree / "bin" / "sh").symlink_to("busybox")
    (tree / "init").write_text(INIT)
    (tree / "init").chmod(0o755)
    (tree / "etc" / "marker-id").write_text(marker + "\n")
    (tree / "etc" / "os-release").write_text('ID=twofold-test\nPRETTY_NAME="twofold test"\n')
    part = work / "root.img"
    _mkext4(part, tree, size_mib, "root")
    return part


def _bootfs(work: Path, root_partuuid: str, fs_uuid: str, size_mib: int) -> Path:
    tree = work / "boot"
    (tree / "grub").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kernel(), tree / "vmlinuz")
    (tree / "grub" / "grub.cfg").write_text(
        "set timeout=0\n"
        "menuentry 'twofold test' {\n"
        f"  linux /vmlinuz root=PARTUUID={root_partuuid} rootfstype=ext4 rw init=/init "
        "console=tty0 console=ttyS0,115200 quiet\n"
        "}\n")
    part = work / "boot.img"
    _mkext4(part, tree, size_mib, "boot", fs_uuid)
    return part


def _place(disk: Path, part: Path, start_mib: int) -> None:
    with part.open("rb") as src, disk.open("r+b") as dst:
        dst.seek(start_mib * MIB)
        shutil.copyfileobj(src, dst, 4 * MIB)


def grub_bios_setup(disk: Path, work: Path, core_lba: int, prefix: str) -> None:
    """What grub-bios-setup does: boot.img in sector 0 (keeping the partition table)
    pointing at core.img at `core_lba`, whose first blocklist points at its second sector."""
    core = work / "core.img"
    run("grub-mkimage", "-O", "i386-pc", "-o", core, "-p", prefix, "biosdisk",
        *GRUB_MODULES)
    img = bytearray(core.read_bytes())
    img[500:508] = (core_lba + 1).to_bytes(8, "little")
    boot = bytearray((GRUB_PC / "boot.img").read_bytes())
    with disk.open("r+b") as f:
        mbr = f.read(512)
        boot[0x1B8:0x200] = mbr[0x1B8:0x200]
        boot[0x5C:0x64] = core_lba.to_bytes(8, "little")
        boot[0x64] = 0xFF  # boot drive: the one the BIOS says
        boot[0x66:0x68] = b"\x90\x90"  # no drive check (hard disk)
        f.seek(0)
        f.write(boot)
        f.seek(core_lba * 512)
        f.write(img)


def _esp(work: Path, prefix: str, size_mib: int, signed_for: str | None) -> Path:
    """An ESP with only the distribution's own path, as a Debian install leaves it: the
    firmware's boot entry is lost with a new disk, and restore must add
    \\EFI\\BOOT\\BOOTX64.EFI. `signed_for`: Debian's signed shim and GRUB, whose
    grub.cfg beside them finds /boot by this file system UUID."""
    part = work / "esp.img"
    with part.open("wb") as f:
        f.truncate(size_mib * MIB)
    run("mkfs.vfat", "-F", "16", "-n", "ESP", part)
    run("mmd", "-i", part, "::/EFI", "::/EFI/debian")
    if signed_for is None:
        efi = work / "grubx64.efi"
        run("grub-mkimage", "-O", "x86_64-efi", "-o", efi, "-p", prefix, *GRUB_MODULES)
        run("mcopy", "-i", part, efi, "::/EFI/debian/grubx64.efi")
        return part
    for name, src in SIGNED_FILES.items():
        run("mcopy", "-i", part, src, f"::/EFI/debian/{name}")
    cfg = work / "grub.cfg"
    cfg.write_text(f"search.fs_uuid {signed_for} root\nset prefix=($root)/grub\n"
                   "configfile $prefix/grub.cfg\n")
    run("mcopy", "-i", part, cfg, "::/EFI/debian/grub.cfg")
    return part


def _build(kind: str, out: Path) -> BootDisk:
    marker = uuid.uuid4().hex[:12]
    disk_id = "2f0f0d01"
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        work = Path(tmp)
        disk = work / "disk.raw"
        if kind == "bios-mbr":
            size, boot_at, root_at, root_n = 48, 1, 25, 2
            table = (f"label: dos\nlabel-id: 0x{disk_id}\n"
                     f"start=2048, size={24 * 2048}, type=83, bootable\n"
                     f"start={25 * 2048}, size={22 * 2048}, type=83\n")
            root_partuuid, prefix = f"{disk_id}-02", "(hd0,msdos1)/grub"
        else:
            first = 2 if kind == "bios-gpt" else 34
            size, boot_at, root_at, root_n = first + 48, first, first + 24, 3
            root_partuuid = str(uuid.uuid4())
            lead = ("start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\n"
                    if kind == "bios-gpt" else
                    f"start=2048, size={33 * 2048}, type=U, name=ESP\n")
            table = (f"label: gpt\n{lead}"
                     f"start={boot_at * 2048}, size={24 * 2048}, type=L, name=boot\n"
                     f"start={root_at * 2048}, size={22 * 2048}, type=L, name=root, "
                     f"uuid={root_partuuid}\n")
            prefix = "(hd0,gpt2)/grub"
        with disk.open("wb") as f:
            f.truncate(size * MIB)
        run("sfdisk", "-q", disk, stdin=table)
        boot_uuid = str(uuid.uuid4())
        _place(disk, _bootfs(work, root_partuuid, boot_uuid, 24), boot_at)
        _place(disk, _rootfs(work, marker, 22), root_at)
        if kind.startswith("uefi"):
            _place(disk, _esp(work, prefix, 33, boot_uuid if kind == SIGNED else None), 1)
        else:
            grub_bios_setup(disk, work, 1 if kind == "bios-mbr" else 2048, prefix)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(disk, out)
    (out.parent / "marker").write_text(marker)
    return BootDisk(out, kind, marker, size * MIB, root_n)


def boot_disk(kind: str) -> BootDisk:
    """A bootable test disk of `kind` (bios-mbr, bios-gpt, uefi, uefi-signed), built once
    per recipe, kernel, busybox and GRUB; callers must not write to it (copy it or use an
    overlay)."""
    need_tools()
    if kind == SIGNED:
        for src in SIGNED_FILES.values():
            if not src.is_file():
                pytest.skip(f"{src} is missing (Debian packages shim-signed, "
                            "shim-helpers-amd64-signed, grub-efi-amd64-signed)")
    busybox = shutil.which("busybox")
    assert busybox is not None
    key = hashlib.sha256("\n".join([
        RECIPE, kind, _sha(kernel()), _sha(Path(busybox)),
        *(_sha(p) for p in SIGNED_FILES.values() if kind == SIGNED),
        _sha(GRUB_PC / "boot.img"), _sha(GRUB_PC / "kernel.img"),
        _sha(GRUB_EFI / "kernel.img")]).encode()).hexdigest()[:16]
    out = CACHE / "disks" / f"{kind}-{key}" / "disk.raw"
    if out.is_file() and (out.parent / "marker").is_file():
        marker = (out.parent / "marker").read_text()
        root_n = 2 if kind == "bios-mbr" else 3
        return BootDisk(out, kind, marker, out.stat().st_size, root_n)
    return _build(kind, out)
