"""What goes into the rescue system: Debian packages, trimmed paths, the boot menu and the
small init that starts the guided restore on every console. Pure text; its hash keys the
cache."""

from __future__ import annotations

import hashlib

LABEL = "TWOFOLD_RESCUE"
INIT = "/usr/local/sbin/twofold-init"
LOGIN = "/usr/local/sbin/twofold-console"

PACKAGES = (
    # kernel (Debian's, signed for Secure Boot) and an initramfs that finds the squashfs
    "linux-image-amd64", "live-boot", "initramfs-tools", "zstd", "kmod", "udev",
    # the same twofold as the host runs on Debian's Python
    "python3",
    # what a restore may need, and a shell to look around with
    "e2fsprogs", "dosfstools", "ntfs-3g", "exfatprogs", "gdisk", "fdisk", "util-linux",
    "xfsprogs", "btrfs-progs", "lvm2", "procps", "less",
    # a network store: an address by DHCP, TLS roots for S3, ssh for known_hosts
    "iproute2", "dhcpcd-base", "ca-certificates", "openssh-client",
)

DPKG_EXCLUDES = (
    "/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*", "/usr/share/lintian/*",
    "/usr/share/locale/*", "/usr/share/linda/*", "/usr/share/bash-completion/*",
)
DPKG_KEEP = ("/usr/share/doc/*/copyright",)

# Kernel drivers a rescue system never loads (sound, GPUs (the firmware's frame buffer
# stays), cameras, radios; and what udev would load at every start for nothing: KVM,
# watchdogs, parallel ports, CPU frequency, sensors): removing them saves about a third of
# the modules' size, and seconds of module loading at each start under emulation.
MODULE_PRUNE = (
    "sound", "drivers/gpu", "drivers/media", "drivers/net/wireless", "net/wireless",
    "net/mac80211", "drivers/bluetooth", "net/bluetooth", "drivers/infiniband",
    "drivers/staging", "drivers/iio", "drivers/isdn", "drivers/net/can", "net/can",
    "drivers/nfc", "net/nfc", "drivers/fpga", "drivers/gnss", "drivers/w1",
    "drivers/net/ethernet/mellanox", "drivers/net/ethernet/chelsio", "drivers/scsi/lpfc",
    "drivers/scsi/qla2xxx", "fs/ocfs2", "fs/gfs2", "arch/x86/kvm", "drivers/watchdog",
    "drivers/parport", "drivers/cpufreq", "drivers/hwmon", "drivers/edac",
    "drivers/input/misc",
)

# The initramfs only finds the rescue medium and mounts its squashfs; the system on it
# loads every other driver. MODULES=list takes the drivers named in the hook below (USB,
# SATA and IDE CD drives, NVMe, also behind Intel VMD (RST), SD cards, virtio) instead of
# MODULES=most's every storage and network driver: 9 MB instead of 38, which the kernel
# unpacks and GRUB reads from the medium at every start.
INITRAMFS_CONF = "MODULES=list\nCOMPRESS=zstd\n"
INITRAMFS_HOOK = """#!/bin/sh
# twofold rescue: the drivers that find the rescue medium
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
for m in ahci ata_piix ata_generic pata_acpi sr_mod sd_mod isofs \\
    xhci_pci ehci_pci ohci_pci uhci_hcd usb_storage uas usbhid hid_generic \\
    nvme vmd virtio_pci virtio_blk virtio_scsi sdhci_pci mmc_block; do
    manual_add_modules "$m"
done
"""
# Hooks of other packages that put what a live start never uses into the initramfs (LVM,
# device mapper, btrfs, XFS, NTFS and FUSE tools, resume from hibernation, GPU and thermal
# drivers); the tools themselves stay in the rescue system. Removed before the initramfs
# is made again.
INITRAMFS_HOOKS_DROPPED = ("lvm2", "dmsetup", "btrfs", "xfs", "ntfs_3g", "fuse", "resume",
                           "thermal", "kms")
# live-boot's hook: no network drivers (it boots from a disk, never by network) and no
# file systems a rescue medium is never on; its own settings leave out dm-verity and FUSE.
LIVE_HOOK_DROPPED = ("auto_add_modules net", "manual_add_modules btrfs",
                     "manual_add_modules jffs2", "manual_add_modules hfs",
                     "manual_add_modules hfsplus")
LIVE_BOOT_CONF = "DISABLE_DM_VERITY=true\nDISABLE_FUSE=true\nDISABLE_NTFS=true\n"

# nonetworking: live-boot leaves the network alone (no second udev pass at start); the
# guide brings it up by DHCP when a network store is typed in.
CMDLINE = f"boot=live nonetworking init={INIT} console=tty0 console=ttyS0,115200 quiet"

GRUB_CFG = f"""set timeout=1
set default=0
if serial --unit=0 --speed=115200; then
    terminal_input --append serial
    terminal_output --append serial
fi
menuentry "twofold rescue: guided restore" {{
    linux /live/vmlinuz {CMDLINE}
    initrd /live/initrd.img
}}
menuentry "twofold rescue: shell only" {{
    linux /live/vmlinuz {CMDLINE} twofold.shell=1
    initrd /live/initrd.img
}}
"""

# The files the rescue console reads before the guide's first question: Python, the
# libraries it maps and the modules the guide imports. A cold start reads them from the
# squashfs on the medium: 7 s for `python3 -c pass` alone under TCG, 0.5 s once they are
# in memory. So the squashfs holds them first, side by side (mksquashfs -sort), and the
# init reads them into memory while udev loads drivers.
BOOT_FILES = "/usr/local/share/twofold/boot-files"
BOOT_FILES_PROBE = """
import os, shutil, subprocess, sys
import twofold.cli.rescue_boot, twofold.cli.rescue_guide, twofold.cli.rescue_steps
tools = [shutil.which(t) for t in ("lsblk", "blkid", "udevadm", "agetty", "setsid")]
files = {os.path.realpath(f) for f in [sys.executable, *tools] if f}
for m in list(sys.modules.values()):
    for f in (getattr(m, "__cached__", None), getattr(m, "__file__", None)):
        if f and not f.endswith(".py") and os.path.isfile(f):
            files.add(os.path.realpath(f))
objects = [f for f in files if not f.endswith(".pyc")]
deps = subprocess.run(["ldd", *objects], capture_output=True, text=True).stdout
for line in deps.splitlines():
    words = line.split()
    for w in words[words.index("=>") + 1:] if "=>" in words else words[:1]:
        if w.startswith("/") and os.path.isfile(w):
            files.add(os.path.realpath(w))
print("\\n".join(sorted(files)))
"""

# PID 1 of the rescue system: no service manager, so it boots in seconds under emulation.
# The consoles start at once; udev loads drivers beside them, and the guide waits for it
# (udevadm settle) before it looks for drives.
INIT_SCRIPT = f"""#!/bin/sh
# twofold rescue init: mounts, udev for drivers and /dev/disk links, a console per screen.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mountpoint -q /proc || mount -t proc proc /proc
read up idle < /proc/uptime
echo "twofold rescue: system started $up s after the kernel" > /dev/console
xargs cat < {BOOT_FILES} > /dev/null 2>&1 &
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run/twofold
mountpoint -q /dev/pts || mount -t devpts devpts /dev/pts
mountpoint -q /run || mount -t tmpfs tmpfs /run
mountpoint -q /tmp || mount -t tmpfs tmpfs /tmp
[ -d /sys/firmware/efi/efivars ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars
echo twofold-rescue > /proc/sys/kernel/hostname
/lib/systemd/systemd-udevd --daemon >/dev/null 2>&1
udevadm trigger --action=add >/dev/null 2>&1 &
ip link set lo up >/dev/null 2>&1 &
for w in $(cat /proc/cmdline); do  # tests: twofold.script=LABEL runs run.sh from that disk
    case "$w" in twofold.script=*)
        wait
        udevadm settle --timeout=15 >/dev/null 2>&1
        mkdir -p /run/twofold/script
        mount -o ro "/dev/disk/by-label/${{w#twofold.script=}}" /run/twofold/script &&
            sh /run/twofold/script/run.sh
        echo "twofold script finished with exit code $?"
        sync; echo o > /proc/sysrq-trigger;;
    esac
done
for c in $(awk '{{print $1}}' /proc/consoles); do
    [ "$c" = tty0 ] && c=tty1
    [ -e "/dev/$c" ] || continue
    ( while :; do
        setsid -w agetty -n -l {LOGIN} --noclear -L "$c" 115200 linux >/dev/null 2>&1
        sleep 2
      done ) &
done
while :; do wait; sleep 5; done
"""

LOGIN_SCRIPT = """#!/bin/sh
# twofold rescue console: the guided restore, then a shell.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM="${TERM:-linux}" PATH
cd /root
grep -qw twofold.shell=1 /proc/cmdline || twofold-guide
echo "twofold rescue: a shell; type 'twofold rescue guide' to start the guided restore again"
exec /bin/bash -l
"""

LAUNCHER = """#!/usr/bin/python3
# twofold, installed from the wheel of the checkout that built this rescue system
import sys
from twofold.cli.app import main
sys.exit(main())
"""
# `twofold rescue guide --boot` without the CLI's option parser and Rich (seconds of
# Python start under emulation).
GUIDE_LAUNCHER = """#!/usr/bin/python3
# the guided restore of the rescue console
import sys
from twofold.cli.rescue_boot import main
sys.exit(main())
"""


def text() -> str:
    """Everything above as one text, for the cache key."""
    parts = [LABEL, INIT, LOGIN, " ".join(PACKAGES), " ".join(DPKG_EXCLUDES),
             " ".join(DPKG_KEEP), " ".join(MODULE_PRUNE), INITRAMFS_CONF, INITRAMFS_HOOK,
             " ".join(INITRAMFS_HOOKS_DROPPED), " ".join(LIVE_HOOK_DROPPED), LIVE_BOOT_CONF,
             GRUB_CFG, INIT_SCRIPT, LOGIN_SCRIPT, LAUNCHER, GUIDE_LAUNCHER, BOOT_FILES,
             BOOT_FILES_PROBE]
    return "\0".join(parts)


def key(*more: str) -> str:
    """The content key of a rescue image: this recipe plus the given texts (wheel
    digests, apt sources, the build code's version)."""
    h = hashlib.sha256(text().encode())
    for m in more:
        h.update(b"\0" + m.encode())
    return h.hexdigest()[:24]
