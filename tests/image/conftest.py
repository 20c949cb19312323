"""Helpers for the image tests: real tools, seeded file trees, copying only used ranges."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from twofold.fsinfo.blockio import FileReader
from twofold.fsinfo.fsbitmap import UsedMap, merge_extents

from ..drives import IS_ROOT, NOT_ROOT_REASON, loop_device, mounted, run, tool

__all__ = ["IS_ROOT", "NOT_ROOT_REASON", "loop_device", "mounted", "run", "tool"]

_TEXT = bytes(b"abcdef \n"[i % 8] for i in range(256))


def make_tree(root: Path, seed: int = 7) -> Path:
    """A seeded tree of files: empty, tiny, block-edge and multi-MiB files, nested dirs."""
    rng = random.Random(seed)
    sizes = [0, 1, 100, 511, 512, 4095, 4096, 4097, 65537, 300_000, 1_500_000, 3_000_000]
    root.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes):
        sub = root / f"d{i % 3}" / ("deep" if i % 4 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size)
        if i % 2 == 0:
            data = data.translate(_TEXT)  # compressible text-like content
        (sub / f"file{i:02d}.bin").write_bytes(data)
    (root / "empty_dir").mkdir(exist_ok=True)
    (root / "readme.txt").write_text("twofold image test tree\n" * 50)
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of the content (or "dir") for everything under root."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def used_map(path: Path) -> UsedMap:
    """The UsedMap of the file system image at `path` (detected)."""
    from twofold.fsinfo.fsbitmap import used_ranges

    with FileReader(path) as reader:
        result = used_ranges(reader)
    assert result is not None, f"{path}: no file system detected"
    return result


def copy_extents(src: Path, dst: Path, extents: Iterable[tuple[int, int]]) -> None:
    """Make dst a sparse file as large as src holding only src's bytes in `extents`."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.truncate(os.fstat(fin.fileno()).st_size)
        for offset, length in extents:
            fin.seek(offset)
            fout.seek(offset)
            fout.write(fin.read(length))


def blkid(image: Path) -> dict[str, str]:
    """What `blkid -p` says of an image (TYPE, LABEL, UUID...)."""
    out = run("blkid", "-p", "-o", "export", image).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def copy_used_and_check(image: Path, extents: Iterable[tuple[int, int]], tmp_path: Path,
                        fsck: list[str], clean_word: str = "") -> Path:
    """A copy of `image` holding only `extents` (zeros elsewhere) that `fsck` must pass."""
    copy = tmp_path / "copy.img"
    copy_extents(image, copy, extents)
    res = run(*fsck, copy, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert clean_word in res.stdout
    return copy


def partclone_domain(fs: str, image: Path, log: Path) -> tuple[tuple[tuple[int, int], ...], int]:
    """The byte ranges `partclone.<fs> -D` (ddrescue domain log) marks as used, and the
    used block count its summary prints ("Space in use: ... = N Blocks")."""
    proc = run(f"partclone.{fs}", "-D", "-s", image, "-O", log)
    found = re.search(r"Space in use:.*= *(\d+) Blocks", proc.stdout + proc.stderr)
    assert found, f"no 'Space in use' in partclone's output:\n{proc.stderr}"
    ranges = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if not line.startswith("#") and len(parts) == 3 and parts[2] == "+":
            ranges.append((int(parts[0], 16), int(parts[1], 16)))
    return merge_extents(ranges), int(found.group(1))


def clip(extents: Iterable[tuple[int, int]], lo: int, hi: int) -> tuple[tuple[int, int], ...]:
    """The parts of `extents` inside [lo, hi)."""
    out = []
    for start, length in extents:
        s, e = max(start, lo), min(start + length, hi)
        if e > s:
            out.append((s, e - s))
    return merge_extents(out)


def sfdisk_json(path: Path | str) -> dict[str, Any]:
    table: dict[str, Any] = json.loads(run("sfdisk", "--json", path).stdout)["partitiontable"]
    return table


def assert_gpt_clean(target: str | Path) -> None:
    assert "No problems found" in run("sgdisk", "-v", target, check=False).stdout
    assert "No errors detected" in run("sfdisk", "--verify", target, check=False).stdout


@pytest.fixture(scope="session")
def sample_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded tree shared by the file system tests (about 5 MB)."""
    return make_tree(tmp_path_factory.mktemp("tree") / "tree")
