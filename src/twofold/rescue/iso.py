"""The hybrid ISO: GRUB for BIOS (El Torito and a hybrid MBR), Debian's signed shim and
GRUB for UEFI (an ESP image, also a GPT partition for sticks), made by xorriso."""

from __future__ import annotations

import shutil
from pathlib import Path

from twofold.rescue import recipe
from twofold.rescue.host import run

GRUB_PC = Path("/usr/lib/grub/i386-pc")
SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
MOKMANAGER = Path("/usr/lib/shim/mmx64.efi.signed")
GRUB_EFI = Path("/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed")
ESP_KIB = 8192


def boot_files(tree: Path, version: str) -> Path:
    """GRUB's files in the ISO tree; returns the ESP image (outside the tree)."""
    grub = tree / "boot/grub"
    (grub / "i386-pc").mkdir(parents=True, exist_ok=True)
    (grub / "grub.cfg").write_text(recipe.GRUB_CFG)
    # Debian's signed GRUB for CDs finds its medium by this file, then reads
    # /boot/grub/grub.cfg from it.
    (tree / ".disk").mkdir(exist_ok=True)
    (tree / ".disk/info").write_text(f"twofold rescue {version}\n")
    for mod in GRUB_PC.iterdir():
        if mod.suffix in (".mod", ".lst"):
            shutil.copy(mod, grub / "i386-pc" / mod.name)
    run(["grub-mkimage", "-O", "i386-pc-eltorito", "-p", "/boot/grub",
         "-o", str(grub / "i386-pc/eltorito.img"), "biosdisk", "iso9660"],
        "grub-mkimage (BIOS)")
    efi = tree / "EFI/BOOT"
    efi.mkdir(parents=True, exist_ok=True)
    names = {SHIM: "BOOTX64.EFI", GRUB_EFI: "grubx64.efi", MOKMANAGER: "mmx64.efi"}
    for src, name in names.items():
        shutil.copy(src, efi / name)
    esp = tree.parent / "efi.img"
    esp.unlink(missing_ok=True)
    run(["mkfs.fat", "-C", "-n", "TWOFOLD_ESP", str(esp), str(ESP_KIB)], "mkfs.fat (ESP)")
    run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], "mmd (ESP)")
    for name in names.values():
        run(["mcopy", "-i", str(esp), str(efi / name), f"::/EFI/BOOT/{name}"], "mcopy (ESP)")
    return esp


def make_iso(tree: Path, esp: Path, out: Path) -> None:
    """xorriso: El Torito for BIOS and UEFI, a hybrid MBR and a GPT with the ESP, so the
    same file boots from a CD and written raw to a stick."""
    run(["xorriso", "-as", "mkisofs", "-o", str(out), "-V", recipe.LABEL,
         "-r", "-J", "-joliet-long", "-iso-level", "3",
         "--grub2-mbr", str(GRUB_PC / "boot_hybrid.img"), "-partition_offset", "16",
         "--mbr-force-bootable",
         "-append_partition", "2", "0xef", str(esp), "-appended_part_as_gpt",
         "-c", "boot/grub/boot.cat",
         "-b", "boot/grub/i386-pc/eltorito.img", "-no-emul-boot", "-boot-load-size", "4",
         "-boot-info-table", "--grub2-boot-info",
         "-eltorito-alt-boot", "-e", "--interval:appended_partition_2:all::",
         "-no-emul-boot", str(tree)], "xorriso")
