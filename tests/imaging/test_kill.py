"""kill -9 during create, then create again: no image is listed after the kill, the
store stays readable, and the second run completes, reusing the chunks already stored."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from twofold.chunks.chunkstore import ChunkStore
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.manage import list_images
from twofold.image.repo import open_objects, open_store
from twofold.image.restore import restore
from twofold.image.verify import verify

from .conftest import FixedClock, MiB, store_files


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def test_kill_during_create_then_create_again(tmp_path: Path) -> None:
    src = tmp_path / "random.img"
    with open(src, "wb") as f:  # incompressible: at level 14 each chunk takes a while
        for _ in range(64):
            f.write(os.urandom(4 * MiB))
    target = tmp_path / "drive"
    target.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-m", "twofold", "image", "create", str(src), "--to", str(target),
         "--name", "k", "--compression", "14", "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not store_files(target, ".pack") and child.poll() is None:
        assert time.monotonic() < deadline, "no pack was written within a minute"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "create finished before it was killed"
    packs_before = store_files(target, ".pack")
    assert packs_before and not list_images(str(target))

    store = open_store(str(target))  # packs nobody indexed are found through their footers
    stored = len(store.index)
    assert stored >= 1

    second = create(str(src), str(target), "k", 1, None, False, NullProgress(),
                    FixedClock())
    assert second.reused_chunks >= stored
    assert second.new_chunks + second.reused_chunks == 256
    assert [i.name for i in list_images(str(target))] == ["k"]
    assert os.listdir(target / "twofold-images" / ".tmp") == []  # the killed run's temp
    assert set(packs_before) <= set(store_files(target, ".pack"))
    fresh = ChunkStore(open_objects(str(target)))
    assert fresh.load_index() == [] and fresh.index  # every pack is indexed now
    assert not verify(str(target), "k", NullProgress(), FixedClock()).damages
    out = tmp_path / "out.img"
    restore(str(target), "k", str(out), None, NullProgress(), FixedClock())
    assert _sha(out) == _sha(src)
