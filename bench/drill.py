"""Time `twofold image drill` against `twofold image restore` alone, on a real Debian disk.

The disk (cached) is made from Debian packages with mmdebstrap: systemd, Debian's kernel
and initramfs, GRUB for BIOS on GPT, and ~1 GB used. It is imaged once; then the same
image is restored to a file, and drilled (restore to a scratch copy + boot in QEMU).
Goal (issue 17): drill <= restore + 90 s under TCG. See docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.bootdisks import grub_bios_setup  # noqa: E402  (GRUB's BIOS boot code on a file)

CACHE = Path(os.environ.get("TWOFOLD_BENCH_CACHE", "/var/cache/twofold-bench"))
PACKAGES = ["systemd-sysv", "udev", "linux-image-amd64", "initramfs-tools", "e2fsprogs",
            "login", "passwd", "python3", "perl", "less", "vim-tiny", "man-db", "locales",
            "ca-certificates", "openssh-client", "iproute2", "build-essential"]
MIB = 1 << 20
DISK_MIB = 3072
GOAL_EXTRA_S = 90.0


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


def timed(cmd: list[str]) -> tuple[float, str, int]:
    """Seconds, output, exit code."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, done.stdout + done.stderr, done.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("--accel", default="tcg", choices=["auto", "kvm", "tcg"])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--screenshot", default=None, help="save the drill's last screen here")
    args = ap.parse_args()
    twofold = str(Path(sys.executable).parent / "twofold")
    disk = build_disk(args.suite)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        store = Path(tmp) / "drive"
        store.mkdir()
        secs, text, rc = timed([twofold, "image", "create", str(disk), "--to", str(store),
                                "--name", "debian", "--compression", "fast", "--json"])
        assert rc == 0, text
        print(f"image create: {secs:.1f} s")
        restore_s, text, rc = timed([twofold, "image", "restore", str(store), "debian",
                                     "--to", str(Path(tmp) / "restored.raw"), "--no-readback"])
        assert rc == 0, text
        (Path(tmp) / "restored.raw").unlink()
        drill_s, text, rc = timed([twofold, "image", "drill", str(store), "debian",
                                   "--accel", args.accel, "--json", "--timeout", "900"])
        rec = json.loads(text[text.index("{"):])
        if args.screenshot and rec.get("screenshot"):
            shutil.copyfile(store / "twofold-images" / rec["screenshot"]["object"],
                            args.screenshot)
        stages = ", ".join(f"{s['name']} {s['seconds']}" for s in rec["stages"])
        extra = drill_s - restore_s
        one, five, _ = os.getloadavg()
        print(f"disk: {disk} ({DISK_MIB} MiB, ~1 GB used), accel {rec['accel']}, "
              f"{os.cpu_count()} cores, load average {one:.1f} (1 min) {five:.1f} (5 min)")
        print(f"restore alone: {restore_s:.1f} s   drill: {drill_s:.1f} s "
              f"(its restore {rec['restore_seconds']} s, boot {rec['boot_seconds']} s)")
        print(f"stages (s after QEMU start): {stages}")
        print(f"drill - restore = {extra:.1f} s, goal <= {GOAL_EXTRA_S:.0f} s: "
              f"{'PASS' if extra <= GOAL_EXTRA_S and rec['passed'] else 'MISS'}"
              f"{'' if rec['passed'] else ' (drill failed: ' + str(rec['reason']) + ')'}")
    return 0 if rec["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
