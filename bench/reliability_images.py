"""Random bit flips in a real image store, then verify, repair, verify --heal, create and
restore: how many flips are named, how many healed, how many lost silently (issue 15).

A file-backed ext4 (mkfs.ext4 -d, no root needed) of seeded files is imaged into a
template store, which is also copied to an "offsite" store. Each trial copies the
template, flips one random bit in one object of a kind chosen in turn (a pack's chunk
data, a pack's own index or header, an index file, a manifest, store.json), then runs
`verify`, `repair`, `verify --heal` (from the offsite store in odd trials, from the source
disk in even ones), a new `create`, a final `verify`, and restores every listed image,
comparing it byte for byte with the source. Per kind it prints:
  detected   verify or repair named the damage (or a command refused with a clear error)
  healed     ... and afterwards verify finds nothing and every image restores exactly
  harmless   not named, and every image still restores exactly (a bit no reader needs)
  lost       an image restored without an error to different bytes (silent corruption)
  create failed  the new create raised an error
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from twofold.core.errors import TwofoldError
from twofold.core.progress import NullProgress
from twofold.image.copy import copy
from twofold.image.create import create
from twofold.image.heal import heal
from twofold.image.manage import list_store
from twofold.image.repair import repair
from twofold.image.restore import restore
from twofold.image.verify import verify
from twofold.jobs.clock import SystemClock

MB = 1 << 20
KINDS = ("pack data", "pack index", "index file", "manifest", "store.json")
P, C = NullProgress(), SystemClock()


def make_source(work: Path, size_mib: int, fill_mib: int, rng: random.Random) -> Path:
    """An ext4 image file holding seeded files (text-like and random)."""
    tree = work / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    text = b"".join(f"line {i} of a seeded document, {i * 7919 % 1000}\n".encode()
                    for i in range(20000))
    done, n = 0, 0
    while done < fill_mib * MB:
        size = rng.choice([4096, 30_000, 200_000, 900_000, 2 * MB])
        data = rng.randbytes(size) if n % 2 else (text * (size // len(text) + 1))[:size]
        folder = tree / f"d{n % 7}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{n}.bin").write_bytes(data)
        done += size
        n += 1
    disk = work / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(size_mib * MB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(disk)], check=True)
    shutil.rmtree(tree)
    return disk


def objects_of(store: Path, kind: str) -> list[Path]:
    """The files of a store that a flip of `kind` may hit."""
    root = store / "twofold-images"
    if kind.startswith("pack"):
        return sorted(root.rglob("*.pack"))
    if kind == "index file":
        return sorted((root / "index").glob("*.json"))
    if kind == "manifest":
        return sorted((root / "images").glob("*.json"))
    return [root / "store.json"]


def flip(store: Path, kind: str, rng: random.Random) -> str:
    """Flip one random bit in one object of `kind`; returns what was hit."""
    path = rng.choice(objects_of(store, kind))
    data = bytearray(path.read_bytes())
    if kind == "pack data":
        index_offset = int.from_bytes(data[-24:-16], "little")
        at = rng.randrange(8, index_offset)
    elif kind == "pack index":
        index_offset = int.from_bytes(data[-24:-16], "little")
        at = rng.choice([rng.randrange(0, 8), rng.randrange(index_offset, len(data))])
    else:
        at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return f"{path.name}@{at}"


def restores(store: Path, source: bytes, work: Path) -> tuple[int, int, int]:
    """(exact, refused, wrong) over every listed image of `store`."""
    exact = refused = wrong = 0
    for info in list_store(str(store)).images:
        out = work / "restored.img"
        out.unlink(missing_ok=True)
        try:
            restore(str(store), info.name, str(out), None, P, C)
        except TwofoldError:
            refused += 1
            continue
        if out.read_bytes() == source:
            exact += 1
        else:
            wrong += 1
    return exact, refused, wrong


def trial(template: Path, offsite: Path, disk: Path, source: bytes, work: Path, kind: str,
          from_offsite: bool, rng: random.Random) -> dict[str, bool]:
    """One flip and the commands after it; what happened."""
    store = work / "trial"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(template, store)
    flip(store, kind, rng)
    named = False
    try:
        named |= not verify(str(store), None, P, C).sound
    except TwofoldError:
        named = True
    try:
        r = repair(str(store), P, C)
        named |= bool(r.marker_remade or r.index_files_damaged or r.packs_damaged
                      or r.manifests_damaged or r.packs_reindexed)
    except TwofoldError:
        named = True
    try:
        if from_offsite:
            heal(str(store), None, P, C, other=str(offsite))
        else:
            heal(str(store), None, P, C, source=str(disk))
    except TwofoldError:
        named = True
    created = True
    try:
        create(str(disk), str(store), "again", 3, None, False, P, C)
    except TwofoldError:
        created = False
    try:
        sound = verify(str(store), None, P, C).sound
    except TwofoldError:
        sound = False
    exact, refused, wrong = restores(store, source, work)
    whole = sound and not refused and not wrong and exact == 2
    return {"detected": named, "healed": named and whole, "harmless": not named and whole,
            "lost": wrong > 0, "create failed": not created}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100, help="bit flips (100)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--size", type=int, default=48, help="ext4 size in MiB (48)")
    ap.add_argument("--fill", type=int, default=20, help="MiB of files in it (20)")
    ap.add_argument("--workdir", default=None, help="where to work (a temp folder)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tf-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    disk = make_source(work, args.size, args.fill, rng)
    source = disk.read_bytes()
    template, offsite = work / "template", work / "offsite"
    for folder in (template, offsite):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    create(str(disk), str(template), "base", 3, None, False, P, C)
    copy(str(template), str(offsite), None, P, C)
    counts: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    started = time.monotonic()
    for i in range(args.trials):
        kind = KINDS[i % len(KINDS)]
        got = trial(template, offsite, disk, source, work, kind, i % 2 == 1, rng)
        counts[kind]["trials"] += 1
        counts[kind].update(k for k, v in got.items() if v)
    took = time.monotonic() - started
    cols = ("trials", "detected", "healed", "harmless", "lost", "create failed")
    print(f"ext4 {args.size} MiB with {args.fill} MiB of files; seed {args.seed}; "
          f"{args.trials} trials in {took:.0f} s")
    print(f"{'flip in':12}" + "".join(f"{c:>15}" for c in cols))
    total: Counter[str] = Counter()
    for kind in KINDS:
        total.update(counts[kind])
        print(f"{kind:12}" + "".join(f"{counts[kind][c]:>15}" for c in cols))
    print(f"{'all':12}" + "".join(f"{total[c]:>15}" for c in cols))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if total["lost"] or total["create failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
