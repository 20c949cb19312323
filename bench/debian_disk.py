"""The real Debian disk the image benchmarks use: built once with mmdebstrap and cached
(build_disk), a copy attached to a loop device with its partitions (attach), and a
deterministic change such as an update leaves (change: a few packages unpacked, new files).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from common import partition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.bootdisks import grub_bios_setup  # noqa: E402  (GRUB's BIOS boot code on a file)

CACHE = Path(os.environ.get("TWOFOLD_BENCH_CACHE", "/var/cache/twofold-bench"))
PACKAGES = ["systemd-sysv", "udev", "linux-image-amd64", "initramfs-tools", "e2fsprogs",
            "login", "passwd", "python3", "perl", "less", "vim-tiny", "man-db", "locales",
            "ca-certificates", "openssh-client", "iproute2", "build-essential"]
MIB = 1 << 20
DISK_MIB = 3072


def _run(*cmd: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, text=True, **kw)  # type: ignore


def build_disk(suite: str) -> Path:
    """A GPT disk with a BIOS boot partition and one ext4 root holding a Debian system."""
    out = CACHE / f"debian-{suite}-{DISK_MIB}M.raw"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        root = Path(tmp) / "root"
        _run("mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             "--dpkgopt=path-exclude=/usr/share/doc/*", suite, root)
        fs_uuid = str(uuid.uuid4())
        (root / "etc/fstab").write_text(f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
        (root / "etc/hostname").write_text("drilled\n")
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        initrds = sorted((root / "boot").glob("initrd.img-*"))
        assert kernels and initrds, "the kernel or initramfs is missing"
        (root / "boot/grub").mkdir(parents=True, exist_ok=True)
        (root / "boot/grub/grub.cfg").write_text(  # as update-grub would write it, in short
            "set timeout=1\n"
            f"search --no-floppy --fs-uuid --set=root {fs_uuid}\n"
            "menuentry 'Debian GNU/Linux' {\n"
            f"  linux /boot/{kernels[-1].name} root=UUID={fs_uuid} ro quiet\n"
            f"  initrd /boot/{initrds[-1].name}\n}}\n")
        # about 1 GB used: the system plus incompressible user data
        used = int(subprocess.run(["du", "-sb", str(root)], capture_output=True, text=True,
                                  check=True).stdout.split()[0])
        filler = max(0, 1000 * 1000 * 1000 - used)
        with (root / "var/lib/userdata.bin").open("wb") as f:
            while filler > 0:
                n = min(filler, 16 * MIB)
                f.write(os.urandom(n))
                filler -= n
        part = Path(tmp) / "root.img"
        _run("mkfs.ext4", "-q", "-F", "-U", fs_uuid, "-L", "root", "-d", root, part,
             f"{DISK_MIB - 4}M")
        disk = Path(tmp) / "disk.raw"
        with disk.open("wb") as f:
            f.truncate(DISK_MIB * MIB)
        _run("sfdisk", "-q", disk, input="label: gpt\nstart=2048, size=2048, "
             "type=21686148-6449-6E6F-744E-656564454649\nstart=4096, type=L\n")
        with part.open("rb") as src, disk.open("r+b") as dst:
            dst.seek(2 * MIB)
            shutil.copyfileobj(src, dst, 4 * MIB)
        grub_bios_setup(disk, Path(tmp), 2048, "(hd0,gpt2)/boot/grub")
        os.replace(disk, out)
    return out


ROOT_PARTITION = 2  # 1 is the BIOS boot partition
ARCHIVES = Path("/var/cache/apt/archives")


def attach(disk: Path, work: Path) -> tuple[Path, str, str]:
    """A sparse copy of `disk` in `work` (the cached one stays as built) on a loop device
    with its partitions: (the copy, the disk's device, its ext4 root partition)."""
    copy = work / disk.name
    subprocess.run(["cp", "--sparse=always", str(disk), str(copy)], check=True)
    dev = subprocess.run(["losetup", "-f", "-P", "--show", str(copy)], check=True,
                         capture_output=True, text=True).stdout.strip()
    return copy, dev, partition(dev, ROOT_PARTITION)


def _installed(root: Path) -> set[str]:
    status = (root / "var/lib/dpkg/status").read_text()
    return {line[9:].strip() for line in status.splitlines() if line.startswith("Package:")}


def unpack_debs(root: Path, rng: random.Random, budget: int) -> tuple[list[str], int]:
    """Unpack packages not yet installed, from the host's apt cache in an order drawn by
    `rng`, until about `budget` bytes of .deb files, into the system at `root`, as dpkg
    unpacks them (no maintainer scripts; /lib and friends stay symlinks into /usr), and
    add them to dpkg's status file (rewritten whole, as dpkg does). (names, bytes of files)"""
    have = _installed(root)
    debs = sorted(ARCHIVES.glob("*.deb"))
    rng.shuffle(debs)
    names: list[str] = []
    total, stanzas = 0, []
    before = _tree_bytes(root)
    for deb in debs:
        name, size = deb.name.split("_")[0], deb.stat().st_size
        if name in have or name in names or total + size > budget:
            continue
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                             capture_output=True).stdout
        subprocess.run(["tar", "-x", "--keep-directory-symlink", "-C", str(root)],
                       input=tar, check=True)
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True,
                                 capture_output=True, text=True).stdout.rstrip("\n")
        first, _, rest = control.partition("\n")
        stanzas.append(f"{first}\nStatus: install ok unpacked\n{rest}\n")
        names.append(name)
        total += size
        if total > budget * 9 // 10:
            break
    status = root / "var/lib/dpkg/status"
    new = status.with_name("status-new")
    new.write_text(status.read_text().rstrip("\n") + "\n\n" + "\n".join(stanzas))
    os.replace(new, status)
    return names, _tree_bytes(root) - before


def _tree_bytes(root: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(root)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def new_files(root: Path, rng: random.Random, mib: int) -> int:
    """`mib` new 1 MiB files in a user's folder, half random, half text (compressible),
    and a line per file appended to a log. Bytes written."""
    folder = root / "home/user/work"
    folder.mkdir(parents=True, exist_ok=True)
    with (root / "var/log/bench-change.log").open("a") as log:
        for i in range(mib):
            text = b"".join(b"log line %d of file %d\n" % (n, i) for n in range(MIB // 40))
            (folder / f"blob{i:03}.bin").write_bytes(rng.randbytes(MIB // 2) +
                                                     text[:MIB // 2])
            log.write(f"wrote blob{i:03}.bin\n")
    return mib * MIB


def change(root: Path, seed: int, deb_mib: int, new_mib: int) -> str:
    """The change between the first and the second image, as a line of text."""
    rng = random.Random(seed)
    names, unpacked = unpack_debs(root, rng, deb_mib * MIB)
    added = new_files(root, rng, new_mib)
    return (f"unpacked {len(names)} packages from {ARCHIVES} ({unpacked / 1e6:.0f} MB of "
            f"files: {' '.join(names)}), {added / 1e6:.0f} MB of new files")
