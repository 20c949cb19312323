"""`make demo`: make sample files, back them up twice with changes between, then show the
runs, the versions kept, a verify and a restore of the first run, checked file by file."""

from __future__ import annotations

import filecmp
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("TWOFOLD_DEMO_OUT", ROOT / "demo-out"))  # the tests put it elsewhere
TWOFOLD = [sys.executable, "-m", "twofold"]
# The demo's own state folder (what twofold remembers of drives and runs), removed with
# demo-out: the demo leaves the user's state alone and runs again after itself.
ENV = {**os.environ, "TWOFOLD_STATE_DIR": str(OUT / "state")}


def say(text: str) -> None:
    print(f"\n\033[1;36m==> {text}\033[0m", flush=True)


def twofold(*args: str) -> int:
    print("$ twofold " + " ".join(args), flush=True)
    return subprocess.run([*TWOFOLD, *args], check=False, env=ENV).returncode


def make_samples(home: Path, rng: random.Random) -> None:
    docs, pics = home / "Documents", home / "Pictures"
    for d in (docs / "letters", docs / "taxes" / "2025", pics / "holiday", docs / "empty"):
        d.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        (docs / "letters" / f"letter-{i:02}.txt").write_text(
            f"Dear friend number {i},\n" + "Lorem ipsum dolor sit amet. " * rng.randint(5, 80))
    (docs / "taxes" / "2025" / "return.csv").write_text(
        "item,amount\n" + "".join(f"row{i},{rng.randint(1, 9999)}\n" for i in range(300)))
    for i in range(6):
        (pics / "holiday" / f"IMG_{1000 + i}.jpg").write_bytes(rng.randbytes(
            rng.randint(200_000, 900_000)))
    (docs / "notes — été.md").write_text("# Notes\nUnicode names are kept as they are.\n")
    os.symlink("letters/letter-00.txt", docs / "latest-letter")
    os.link(pics / "holiday" / "IMG_1000.jpg", pics / "favourite.jpg")


def change_some(home: Path, rng: random.Random) -> None:
    docs = home / "Documents"
    with open(docs / "letters" / "letter-03.txt", "a") as f:
        f.write("P.S. an edit made after the first backup.\n")
    (docs / "letters" / "letter-07.txt").unlink()
    (docs / "taxes" / "2025" / "receipt.pdf").write_bytes(rng.randbytes(50_000))
    os.rename(docs / "notes — été.md", docs / "notes-2026.md")
    os.chmod(docs / "taxes" / "2025" / "return.csv", 0o600)


def same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths that differ between two trees (content, type or link target)."""
    diff: list[str] = []
    for dirpath, dirs, files in os.walk(a):
        for name in dirs + files:
            pa = Path(dirpath) / name
            rel = pa.relative_to(a)
            if not _same(pa, b / rel):
                diff.append(str(rel))
    return diff


def _same(pa: Path, pb: Path) -> bool:
    if pa.is_symlink() or pb.is_symlink():
        return pb.is_symlink() and pa.is_symlink() and os.readlink(pa) == os.readlink(pb)
    if pa.is_file():
        return pb.is_file() and filecmp.cmp(pa, pb, shallow=False)
    return pb.is_dir()


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    home, drive = OUT / "home", OUT / "backup-drive"
    drive.mkdir(parents=True)
    rng = random.Random(2026)
    say("Making sample files in demo-out/home (Documents and Pictures)")
    make_samples(home, rng)
    snapshot = OUT / "as-of-first-run"
    shutil.copytree(home, snapshot, symlinks=True)
    srcs = [str(home / "Documents"), str(home / "Pictures")]
    say("First backup to demo-out/backup-drive (a folder standing in for the external drive)")
    if twofold("backup", *srcs, "--to", str(drive), "--set", "demo") != 0:
        return 1
    say("Changing some files: one edited, one deleted, one added, one renamed, one chmod")
    change_some(home, rng)
    say("Second backup: only what changed is copied; replaced files move to versions/")
    if twofold("backup", *srcs, "--to", str(drive), "--set", "demo") != 0:
        return 1
    say("Status: the runs of the set")
    twofold("runs", "--from", str(drive), "--set", "demo")
    say("Every kept version of the edited letter")
    twofold("history", "--from", str(drive), "--set", "demo",
            "Documents/letters/letter-03.txt")
    say("The backup is plain files; the replaced and deleted ones are under versions/")
    for p in sorted((drive / "twofold" / "demo" / "versions").rglob("*")):
        if p.is_file():
            print("   ", p.relative_to(drive))
    say("Verify: re-read every kept copy and check its BLAKE3, and compare with the source")
    if twofold("verify", "--from", str(drive), "--set", "demo", "--against-source") != 0:
        return 1
    restored = OUT / "restored"
    say("Restore the first run into demo-out/restored and compare it with the saved tree")
    if twofold("restore", "--from", str(drive), "--set", "demo", "--as-of", "1",
               "--to", str(restored)) != 0:
        return 1
    diff = same_tree(snapshot, restored) + same_tree(restored, snapshot)
    if diff:
        print("\033[1;31mrestored tree differs:\033[0m", diff)
        return 1
    print("\033[1;32mThe restored first run is identical to the files as they were.\033[0m")
    print(f"\nEverything is in {OUT}; look around, then `rm -rf {OUT}`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
