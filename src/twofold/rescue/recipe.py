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
# stays), cameras, radios): removing them saves about a third of the modules' size.
MODULE_PRUNE = (
    "sound", "drivers/gpu", "drivers/media", "drivers/net/wireless", "net/wireless",
    "net/mac80211", "drivers/bluetooth", "net/bluetooth", "drivers/infiniband",
    "drivers/staging", "drivers/iio", "drivers/isdn", "drivers/net/can", "net/can",
    "drivers/nfc", "net/nfc", "drivers/fpga", "drivers/gnss", "drivers/w1",
    "drivers/net/ethernet/mellanox", "drivers/net/ethernet/chelsio", "drivers/scsi/lpfc",
    "drivers/scsi/qla2xxx", "fs/ocfs2", "fs/gfs2",
)

# initramfs-tools: every storage driver (MODULES=most covers USB, SATA, NVMe, virtio),
# plus Intel VMD (RST) which NVMe drives sit behind on many laptops.
INITRAMFS_CONF = "MODULES=most\nCOMPRESS=zstd\n"
INITRAMFS_HOOK = """#!/bin/sh
# twofold rescue: drivers for disks behind Intel VMD (RST)
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
for m in vmd nvme ahci uas usb-storage xhci-pci virtio_blk virtio_scsi virtio_pci; do
    manual_add_modules "$m"
done
"""

CMDLINE = f"boot=live init={INIT} console=tty0 console=ttyS0,115200 quiet"

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

# PID 1 of the rescue system: no service manager, so it boots in seconds under emulation.
INIT_SCRIPT = f"""#!/bin/sh
# twofold rescue init: mounts, udev for drivers and /dev/disk links, a console per screen.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run/twofold
mountpoint -q /dev/pts || mount -t devpts devpts /dev/pts
mountpoint -q /run || mount -t tmpfs tmpfs /run
mountpoint -q /tmp || mount -t tmpfs tmpfs /tmp
[ -d /sys/firmware/efi/efivars ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars
hostname twofold-rescue
ip link set lo up 2>/dev/null
/lib/systemd/systemd-udevd --daemon >/dev/null 2>&1
udevadm trigger --action=add >/dev/null 2>&1
udevadm settle --timeout=15 >/dev/null 2>&1
for w in $(cat /proc/cmdline); do  # tests: twofold.script=LABEL runs run.sh from that disk
    case "$w" in twofold.script=*)
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
grep -qw twofold.shell=1 /proc/cmdline || twofold rescue guide --boot
echo "twofold rescue: a shell; type 'twofold rescue guide' to start the guided restore again"
exec /bin/bash -l
"""

LAUNCHER = """#!/usr/bin/python3
# twofold, installed from the wheel of the checkout that built this rescue system
import sys
from twofold.cli.app import main
sys.exit(main())
"""


def text() -> str:
    """Everything above as one text, for the cache key."""
    parts = [LABEL, INIT, LOGIN, " ".join(PACKAGES), " ".join(DPKG_EXCLUDES),
             " ".join(DPKG_KEEP), " ".join(MODULE_PRUNE), INITRAMFS_CONF, INITRAMFS_HOOK,
             GRUB_CFG, INIT_SCRIPT, LOGIN_SCRIPT, LAUNCHER]
    return "\0".join(parts)


def key(*more: str) -> str:
    """The content key of a rescue image: this recipe plus the given texts (wheel
    digests, apt sources, the build code's version)."""
    h = hashlib.sha256(text().encode())
    for m in more:
        h.update(b"\0" + m.encode())
    return h.hexdigest()[:24]
