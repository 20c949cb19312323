"""Generate a seeded, realistic personal-files tree for benchmarks, and change ~1 % of it.

The same --files, --total-size and --seed always give the same tree (names, sizes, bytes,
mtimes, links). See bench/README.md for what the tree holds.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30
RANDOM_BUF = 64 * MB  # incompressible bytes, sliced for photos, documents and videos
TEXT_BUF = 4 * MB  # text-like bytes, sliced for small files
WRITE_CHUNK = 8 * MB
BASE_MTIME = 1_500_000_000  # mid-2017; files get mtimes spread over the following years
MTIME_SPAN = 6 * 365 * 86400

TOP_DIRS = ("Documents", "Pictures", "Music", "Videos", "Projects", "Desktop", "Downloads",
            "Mail archive", "Écoles & cours")
DIR_WORDS = (
    "2017", "2018", "2019", "2020", "2021", "2022", "2023", "old", "misc", "backup copy",
    "Urlaub Spanien", "Été 2019", "日本旅行", "Ñandú", "family", "invoices", "taxes",
    "work", "src", "lib", "tests", "notes", "drafts", "final", "Fotos – Export", "scans",
    "Москва", "receipts", "kids", "garden", "car", "house", "thesis", "chapter 1",
    "assets", "raw", "edited", "Résumés", "πρόχειρα", "contracts", "2024 Q1", "music lessons",
)
FILE_WORDS = (
    "report", "notes", "letter", "invoice", "draft", "summary", "todo", "readme", "budget",
    "meeting", "recipe", "Übersicht", "naïve plan", "año nuevo", "写真", "résumé", "list",
    "contract", "scan", "main", "utils", "config", "chapter", "Привет", "copy of",
)
TEXT_EXT = (".txt", ".md", ".py", ".csv", ".json", ".html", ".eml", ".log", ".tex", ".ini")
MEDIUM_EXT = (".jpg", ".jpeg", ".png", ".pdf", ".docx", ".xlsx", ".heic", ".mp3", ".zip")
TEXT_WORDS = (
    "the", "of", "and", "backup", "file", "meeting", "tomorrow", "invoice", "total", "def",
    "return", "import", "value", "Straße", "naïve", "café", "数据", "line", "error", "ok",
)


@dataclass
class Summary:
    """What was generated or changed."""

    files: int = 0
    bytes: int = 0
    dirs: int = 0
    empty_dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    sparse: int = 0
    videos: int = 0
    medium: int = 0
    small: int = 0
    seconds: float = 0.0
    edited: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


class Writer:
    """Writes file content from two reused buffers (random and text-like) with os.write."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rand = memoryview(rng.randbytes(RANDOM_BUF))
        words = [rng.choice(TEXT_WORDS) for _ in range(TEXT_BUF // 5)]
        text = " ".join(words).encode()
        step = 60
        lines = b"\n".join(text[i:i + step] for i in range(0, len(text), step))
        self.text = memoryview(lines[:TEXT_BUF])

    def _slice(self, buf: memoryview, n: int) -> memoryview:
        off = self.rng.randrange(0, len(buf) - n) if n < len(buf) else 0
        return buf[off:off + n]

    def fill(self, fd: int, size: int, text: bool, tag: bytes) -> None:
        """Write `size` bytes to fd: a unique tag, then slices of a buffer."""
        buf = self.text if text else self.rand
        head = tag[:size]
        _write_all(fd, head)
        left = size - len(head)
        while left > 0:
            n = min(left, WRITE_CHUNK, len(buf) - 1)
            _write_all(fd, self._slice(buf, n))
            left -= n

    def write_file(self, path: str, size: int, text: bool, tag: bytes) -> None:
        """Create `path` with `size` bytes of content."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.fill(fd, size, text, tag)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def parse_size(text: str) -> int:
    """'2G', '50M', '300k' or a plain byte count."""
    units = {"K": KB, "M": MB, "G": GB, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _name(rng: random.Random, words: tuple[str, ...], ext: str, used: set[str]) -> str:
    while True:
        base = rng.choice(words)
        style = rng.random()
        if style < 0.3:
            base = f"{base} {rng.randrange(1, 999)}"
        elif style < 0.5:
            base = f"{base}_{rng.randrange(1, 99):02d}"
        elif style < 0.6:
            base = f"{base} ({rng.randrange(1, 9)})"
        else:
            base = f"{base}-{rng.randrange(1000, 99999)}"
        name = base + ext
        if name not in used:
            used.add(name)
            return name


def _plan_sizes(rng: random.Random, files: int, total: int) -> tuple[list[int], list[int],
                                                                      list[int]]:
    """Sizes of videos, medium files and small files adding up to about `total`."""
    video_budget = total * 3 // 10
    if video_budget >= 50 * MB:
        n = max(1, min(8, round(video_budget / (150 * MB))))
        raw = [rng.uniform(50, 300) for _ in range(n)]
        scale = video_budget / (sum(raw) * MB)
        videos = [max(50 * MB, min(300 * MB, int(r * scale * MB))) for r in raw]
    else:
        videos = [video_budget] if files >= 50 and video_budget > 0 else []
    small_n = max(0, files - len(videos))
    small = [_log_uniform(rng, 100, 20 * KB) for _ in range(small_n)]
    rest = total - sum(videos) - sum(small)
    medium: list[int] = []
    while rest > 100 * KB and len(medium) < small_n:
        size = min(rest, _log_uniform(rng, 100 * KB, 5 * MB))
        medium.append(size)
        rest -= size
    del small[len(small) - len(medium):]  # medium files take the place of small ones
    return videos, medium, small


class Tree:
    """Builds the folder structure and places files in it."""

    def __init__(self, root: str, rng: random.Random, n_dirs: int) -> None:
        self.root = root
        self.rng = rng
        self.dirs: list[str] = []
        self.weights: list[float] = []
        self.names: dict[str, set[str]] = {}
        for top in TOP_DIRS:
            self._add(top)
        while len(self.dirs) < n_dirs:
            # prefer recent folders as parents: gives deep chains as well as broad ones
            i = len(self.dirs) - 1 - min(int(rng.expovariate(1 / 40)), len(self.dirs) - 1)
            parent = self.dirs[i]
            if parent.count("/") >= 11:
                parent = rng.choice(self.dirs[: len(TOP_DIRS)])
            name = _name(rng, DIR_WORDS, "", self.names[parent])
            self._add(f"{parent}/{name}")

    def _add(self, rel: str) -> None:
        os.makedirs(os.path.join(self.root, rel), exist_ok=True)
        self.dirs.append(rel)
        self.names[rel] = set()
        self.weights.append(self.rng.paretovariate(1.2))  # a few folders hold many files

    def pick(self, top: str | None = None) -> str:
        """A folder for a new file, optionally under one top-level folder."""
        if top is None:
            return self.rng.choices(self.dirs, self.weights)[0]
        cands = [d for d in self.dirs if d == top or d.startswith(top + "/")]
        return self.rng.choice(cands)

    def new_file(self, folder: str, ext: str) -> str:
        """A fresh relative path in `folder`."""
        return f"{folder}/{_name(self.rng, FILE_WORDS, ext, self.names[folder])}"


def _set_mtime(path: str, rng: random.Random) -> None:
    t = BASE_MTIME + rng.randrange(MTIME_SPAN)
    os.utime(path, ns=(t * 1_000_000_000, t * 1_000_000_000 + rng.randrange(10**9)),
             follow_symlinks=False)


def generate(out: str, files: int, total: int, seed: int) -> Summary:
    """Create the tree under `out` (which must not exist or be empty)."""
    t0 = time.monotonic()
    if os.path.exists(out) and os.listdir(out):
        raise SystemExit(f"gentree: {out} exists and is not empty")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(seed)
    w = Writer(rng)
    s = Summary()
    tree = Tree(out, rng, max(len(TOP_DIRS), files // 20))
    videos, medium, small = _plan_sizes(rng, files, total)
    sparse_n = 2 if files >= 20 else 0
    del small[len(small) - min(sparse_n, len(small)):]
    written: list[str] = []
    small_paths: list[str] = []

    def put(rel: str, size: int, text: bool) -> None:
        path = os.path.join(out, rel)
        w.write_file(path, size, text, f"{rel}\n".encode())
        _set_mtime(path, rng)
        written.append(rel)
        if size <= 20 * KB:
            small_paths.append(rel)
        s.files += 1
        s.bytes += size

    for size in videos:
        put(tree.new_file(tree.pick("Videos"), rng.choice((".mp4", ".mov", ".mkv"))), size,
            False)
        s.videos += 1
    for size in medium:
        top = rng.choice(("Pictures", "Pictures", "Documents", "Music", "Downloads", None))
        put(tree.new_file(tree.pick(top), rng.choice(MEDIUM_EXT)), size, False)
        s.medium += 1
    for size in small:
        text = rng.random() < 0.8
        ext = rng.choice(TEXT_EXT) if text else rng.choice((".bin", ".dat", ".ico", ".gz"))
        put(tree.new_file(tree.pick(), ext), size, text)
        s.small += 1
    for i in range(sparse_n):  # disk images: mostly holes, a few MB of data
        rel = tree.new_file(tree.pick("Downloads"), f" disk image {i}.img")
        path = os.path.join(out, rel)
        apparent = max(4 * MB, min(64 * MB, total // 32))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, apparent)
            for k in range(4):
                os.lseek(fd, k * apparent // 4, os.SEEK_SET)
                w.fill(fd, min(256 * KB, apparent // 8), False, rel.encode())
        finally:
            os.close(fd)
        _set_mtime(path, rng)
        s.sparse += 1
        s.files += 1
        s.bytes += 4 * min(256 * KB, apparent // 8)
    for rel in rng.sample(small_paths, min(len(small_paths), max(1, files // 200))):
        link = tree.new_file(tree.pick(), os.path.splitext(rel)[1])
        os.link(os.path.join(out, rel), os.path.join(out, link))
        s.hardlinks += 1
    for i in range(max(2, files // 200)):
        folder = tree.pick()
        depth = folder.count("/") + 1
        if i % 20 == 0:
            target = f"missing file {i}.txt"  # dangling, as real homes have
        elif i % 10 == 0:
            target = "../" * depth + rng.choice(TOP_DIRS)  # link to a folder
        else:
            target = "../" * depth + rng.choice(written)
        link = os.path.join(out, tree.new_file(folder, " link"))
        os.symlink(target, link)
        _set_mtime(link, rng)
        s.symlinks += 1
    for _ in range(max(3, files // 1000)):
        folder = tree.pick()
        os.mkdir(os.path.join(out, folder, _name(rng, DIR_WORDS, " (empty)",
                                                 tree.names[folder])))
        s.empty_dirs += 1
    s.dirs = len(tree.dirs) + s.empty_dirs
    for dirpath in sorted((d for d, _, _ in os.walk(out)), key=lambda d: (-d.count("/"), d)):
        _set_mtime(dirpath, rng)
    s.seconds = time.monotonic() - t0
    return s


def _regular_files(root: str) -> list[str]:
    out: list[str] = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                out.append(os.path.relpath(p, root))
    out.sort()
    return out


def mutate(root: str, fraction: float, seed: int) -> Summary:
    """Change about `fraction` of the files: edit half, add 3/10, delete 1/5."""
    t0 = time.monotonic()
    rng = random.Random(seed ^ 0x5EED)
    w = Writer(random.Random(seed ^ 0xC0FFEE))
    files = _regular_files(root)
    n = max(3, round(len(files) * fraction))
    n_edit, n_add = max(1, n // 2), max(1, n * 3 // 10)
    n_del = max(1, n - n_edit - n_add)
    picked = rng.sample(files, n_edit + n_del)
    s = Summary()
    for rel in picked[:n_edit]:
        path = os.path.join(root, rel)
        size = os.path.getsize(path)
        fd = os.open(path, os.O_WRONLY)
        try:  # overwrite a stretch in place, and sometimes append
            os.lseek(fd, rng.randrange(max(1, size)), os.SEEK_SET)
            w.fill(fd, min(4 * KB, max(1, size // 10)), True, b"edited ")
            if rng.random() < 0.3:
                os.lseek(fd, 0, os.SEEK_END)
                w.fill(fd, rng.randrange(1, 2 * KB), True, b"\nappended ")
        finally:
            os.close(fd)
        s.edited.append(rel)
    for rel in picked[n_edit:]:
        os.unlink(os.path.join(root, rel))
        s.deleted.append(rel)
    folders = sorted({os.path.dirname(r) for r in files})
    for i in range(n_add):
        rel = os.path.join(rng.choice(folders), f"new file {i} – {seed}.txt")
        size = _log_uniform(rng, 100, 20 * KB) if i % 10 else _log_uniform(rng, 100 * KB, 3 * MB)
        w.write_file(os.path.join(root, rel), size, i % 10 != 0, rel.encode())
        s.added.append(rel)
        s.bytes += size
    s.files = n_edit + n_add + n_del
    s.seconds = time.monotonic() - t0
    return s


def main(argv: list[str] | None = None) -> int:
    """Command line: generate a tree, or change an existing one with --mutate."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="folder to create (must be empty)")
    ap.add_argument("--files", type=int, default=100_000, help="regular files (default 100000)")
    ap.add_argument("--total-size", default="2G", help="total bytes, e.g. 2G, 50M (default 2G)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--mutate", type=float, metavar="FRACTION",
                    help="instead of generating, change this fraction of files in --out")
    args = ap.parse_args(argv)
    if args.mutate is not None:
        s = mutate(args.out, args.mutate, args.seed)
        print(f"edited {len(s.edited)}, added {len(s.added)}, deleted {len(s.deleted)} "
              f"in {s.seconds:.1f} s")
        return 0
    s = generate(args.out, args.files, parse_size(args.total_size), args.seed)
    print(f"{s.files} files ({s.small} small, {s.medium} medium, {s.videos} videos, "
          f"{s.sparse} sparse), {s.bytes / MB:.0f} MiB, {s.dirs} folders "
          f"({s.empty_dirs} empty), {s.symlinks} symlinks, {s.hardlinks} hard links, "
          f"in {s.seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
