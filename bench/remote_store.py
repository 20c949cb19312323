"""The same disk imaged into a local folder, over SFTP (OpenSSH's sshd on 127.0.0.1) and
into S3 (a single-node Ceph's gateway on 127.0.0.1): time and bytes sent for the first
image and for a second one after about 5 % of the disk changed.

Bytes sent are what twofold handed to the store (packs, index files, manifest, lock
records), counted by a metered store; `lo` is what crossed the loopback interface in both
directions (protocol overhead and the server's answers included). The page cache is
dropped before each image when running as root. Goals of issue 6: the second image sends
at most 1.1x the bytes of its new chunks; imaging into Ceph runs at >= 70 % of the speed
of imaging into a local folder.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.imaging.servers import start_ceph, start_sshd  # noqa: E402

from twofold.blobs.metered import Metered  # noqa: E402
from twofold.blobs.remote import open_target  # noqa: E402
from twofold.core.progress import NullProgress  # noqa: E402
from twofold.image.create import create  # noqa: E402
from twofold.jobs.clock import SystemClock  # noqa: E402

MiB = 1 << 20
TEXT = bytes(b"etaoinshrdlucmfwyp      \n"[i % 25] for i in range(256))
"""A byte -> letter table: random bytes become text-like bytes (about 4.6 bits each)."""


def fill(path: Path, size_mib: int, seed: int) -> None:
    """A disk of mixed data: per MiB, text-like (compresses about 2:1), random, or zero."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        for _ in range(size_mib):
            kind = rnd.random()
            if kind < 0.55:
                f.write(rnd.randbytes(MiB).translate(TEXT))
            elif kind < 0.9:
                f.write(rnd.randbytes(MiB))
            else:
                f.write(bytes(MiB))


def change(path: Path, share: float, seed: int) -> None:
    """Rewrite `share` of the disk's MiB cells with new random bytes (in 64 KiB runs)."""
    rnd = random.Random(seed)
    cells = path.stat().st_size // MiB
    with open(path, "r+b") as f:
        for cell in rnd.sample(range(cells), int(cells * share)):
            f.seek(cell * MiB + rnd.randrange(0, MiB - (64 << 10)))
            f.write(rnd.randbytes(64 << 10))


def lo_bytes() -> int:
    """Bytes sent over the loopback interface so far."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[8])
    return 0


def drop_caches() -> None:
    """Sync and drop the page cache (root only; otherwise a no-op)."""
    os.sync()
    if os.geteuid() == 0:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


@dataclass
class Run:
    """One image into one store."""

    seconds: float
    sent: int
    stored_new: int
    lo: int


def image(src: Path, url: str, name: str) -> Run:
    """Create one image, measured."""
    drop_caches()
    lo = lo_bytes()
    start = time.monotonic()
    store = Metered(open_target(url))  # making the S3 client is part of the run
    r = create(str(src), store, name, 3, None, False, NullProgress(), SystemClock())
    took = time.monotonic() - start
    return Run(took, store.bytes_sent, r.stored_new_bytes, lo_bytes() - lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="disk size in MiB (1024)")
    ap.add_argument("--work", default=None, help="work folder (default: a temp folder)")
    ap.add_argument("--stores", default="local,sftp,s3",
                    help="which stores, comma-separated (local,sftp,s3); local is always run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tfbench", dir=args.work))
    (work / "sshd").mkdir()
    sshd = start_sshd(work / "sshd")
    ceph = start_ceph()
    try:
        if isinstance(sshd, str) or isinstance(ceph, str):
            why = sshd if isinstance(sshd, str) else ceph
            raise SystemExit(f"cannot start the servers: {why}")
        os.environ.update({**sshd.env(), **ceph.env})
        v1, v2 = work / "v1.img", work / "v2.img"
        fill(v1, args.size, 1)
        shutil.copyfile(v1, v2)
        change(v2, 0.05, 2)
        disk = work / "disk.img"
        bucket = ceph.bucket()
        targets = {"local": str(work / "local"), "sftp": sshd.url(work / "sftp"),
                   "s3": f"s3://{bucket}/bench"}
        (work / "local").mkdir()
        (work / "sftp").mkdir()
        wanted = {"local", *args.stores.split(",")}
        results: dict[str, tuple[Run, Run]] = {}
        for kind, url in ((k, u) for k, u in targets.items() if k in wanted):
            shutil.copyfile(v1, disk)
            first = image(disk, url, "first")
            shutil.copyfile(v2, disk)
            results[kind] = (first, image(disk, url, "second"))
        report(args.size, results)
    finally:
        if not isinstance(sshd, str):
            sshd.stop()
        if not isinstance(ceph, str):
            ceph.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(size: int, results: dict[str, tuple[Run, Run]]) -> None:
    """Print the table, the ratios and the goals."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    print(f"disk {size} MiB (text-like, random and zero MiBs), 5 % of cells changed; "
          f"zstd 3; commit {commit}; {os.cpu_count()} CPUs")
    print(f"{'store':6} {'1st s':>7} {'MB/s':>7} {'1st sent MB':>12} {'lo MB':>8} "
          f"{'2nd s':>7} {'2nd sent MB':>12} {'new chunks MB':>14} {'sent/new':>9} "
          f"{'lo MB':>8}")
    for kind, (a, b) in results.items():
        print(f"{kind:6} {a.seconds:7.2f} {size * MiB / a.seconds / 1e6:7.1f} "
              f"{a.sent / 1e6:12.1f} {a.lo / 1e6:8.1f} {b.seconds:7.2f} {b.sent / 1e6:12.2f} "
              f"{b.stored_new / 1e6:14.2f} {b.sent / max(1, b.stored_new):9.3f} "
              f"{b.lo / 1e6:8.2f}")
    local = results["local"][0].seconds
    for kind in ("sftp", "s3"):
        if kind not in results:
            continue
        first, second = results[kind]
        print(f"{kind}: first image at {local / first.seconds:.0%} of the local speed, "
              f"second at {results['local'][1].seconds / second.seconds:.0%}")
    worst = max(b.sent / max(1, b.stored_new) for _, b in results.values())
    print(f"goal: second image sends <= 1.1x its new chunks: worst {worst:.3f}x -> "
          f"{'met' if worst <= 1.1 else 'MISSED'}")
    if "s3" in results:
        s3_speed = local / results["s3"][0].seconds
        print(f"goal: Ceph >= 70 % of local speed: {s3_speed:.0%} -> "
              f"{'met' if s3_speed >= 0.7 else 'MISSED'}")


if __name__ == "__main__":
    main()
