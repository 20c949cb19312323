"""copy_file and hash_file read a file none of which is cached past the page cache
(O_DIRECT) and a cached one through it, with the same bytes and hash either way: every
length around the alignment, sparse files, a read the OS refuses, a file that grows while
read. And the thread's buffer is private to its process, so forked copy workers do not
share it."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import blake3
import pytest

from twofold.fsinfo.blockio import DIRECT_ALIGN, private_buffer
from twofold.fsinfo.disk import none_cached
from twofold.sets import copy as copymod
from twofold.sets.copy import BUF, copy_file, hash_file

LENGTHS = [1, DIRECT_ALIGN - 1, DIRECT_ALIGN, DIRECT_ALIGN + 1, BUF - 1, BUF, BUF + 1,
           3 * BUF + 123]


def _uncache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _direct_possible(path: Path) -> bool:
    """Whether this folder's file system and kernel let a test see a direct read."""
    _uncache(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        if not none_cached(fd):
            return False  # no cachestat (before Linux 6.5), or a file system of memory
        try:
            fd2 = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except OSError:
            return False
        os.close(fd2)
        return True
    finally:
        os.close(fd)


class ReadSpy:
    """Wraps os.readv: records, for each read, whether its descriptor was O_DIRECT."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.direct: list[bool] = []
        self._readv = os.readv
        monkeypatch.setattr(os, "readv", self)

    def __call__(self, fd: int, buffers: list[memoryview]) -> int:
        self.direct.append(bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT))
        return self._readv(fd, buffers)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    probe = tmp_path / "probe"
    probe.write_bytes(b"x" * DIRECT_ALIGN)
    if not _direct_possible(probe):
        pytest.skip("here no direct read can be seen: the file system refuses O_DIRECT "
                    "or the kernel has no cachestat (Linux 6.5)")
    return tmp_path


@pytest.mark.parametrize("length", LENGTHS)
def test_an_uncached_file_is_read_past_the_cache(folder: Path, length: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(length)
    src = folder / "src"
    src.write_bytes(data)
    _uncache(src)
    spy = ReadSpy(monkeypatch)
    copied = copy_file(os.fsencode(src), os.fsencode(folder / "dst"))
    assert (folder / "dst").read_bytes() == data
    assert copied.hash == blake3.blake3(data).digest() and copied.size == length
    assert spy.direct[0], "the first read of an uncached file was not direct"
    assert hash_file(os.fsencode(src)) == (copied.hash, length)


def test_a_cached_file_is_read_through_the_cache(folder: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(BUF + 5)
    src = folder / "src"
    src.write_bytes(data)
    assert src.read_bytes() == data  # in the page cache now
    spy = ReadSpy(monkeypatch)
    copied = copy_file(os.fsencode(src), os.fsencode(folder / "dst"))
    assert copied.hash == blake3.blake3(data).digest()
    assert spy.direct and not any(spy.direct)


def test_a_sparse_file_keeps_its_holes_and_content(folder: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src = folder / "sparse"
    head, tail = os.urandom(DIRECT_ALIGN + 17), os.urandom(300)
    with open(src, "wb") as f:
        f.write(head)
        f.seek(8 * BUF)
        f.write(tail)
    _uncache(src)
    spy = ReadSpy(monkeypatch)
    copy_file(os.fsencode(src), os.fsencode(folder / "dst"))
    want = head + bytes(8 * BUF - len(head)) + tail
    assert (folder / "dst").read_bytes() == want
    assert os.stat(folder / "dst").st_blocks * 512 < len(want) // 2, "the hole was filled"
    assert spy.direct[0]


@pytest.mark.parametrize("err", [errno.EINVAL, errno.EIO])
def test_a_refused_direct_read_is_done_through_the_cache(
        folder: Path, monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    data = os.urandom(2 * BUF + 99)
    src = folder / "src"
    src.write_bytes(data)
    _uncache(src)
    real_readv = os.readv
    refused: list[int] = []

    def readv(fd: int, buffers: list[memoryview]) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT and len(refused) < 1:
            refused.append(fd)
            raise OSError(err, os.strerror(err))
        return real_readv(fd, buffers)

    monkeypatch.setattr(os, "readv", readv)
    copied = copy_file(os.fsencode(src), os.fsencode(folder / "dst"))
    assert refused, "no direct read was tried"
    assert (folder / "dst").read_bytes() == data
    assert copied.hash == blake3.blake3(data).digest()


def test_a_file_that_grows_while_read_copies_its_first_size(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last read asks for whole blocks; what lies past the size taken first is not
    copied, and the copy says the file changed (the run then copies it again)."""
    data = os.urandom(BUF + 1000)
    src = folder / "src"
    src.write_bytes(data)
    _uncache(src)
    real = copymod.none_cached

    def grow_then_ask(fd: int) -> bool:
        answer = real(fd)
        with open(src, "ab") as f:
            f.write(b"more" * 1000)
            os.fsync(f.fileno())
        return answer

    monkeypatch.setattr(copymod, "none_cached", grow_then_ask)
    copied = copy_file(os.fsencode(src), os.fsencode(folder / "dst"))
    assert (folder / "dst").read_bytes() == data
    assert copied.hash == blake3.blake3(data).digest() and copied.size == len(data)
    assert not copied.stable


def test_private_buffer_is_not_shared_with_a_forked_child() -> None:
    buf = private_buffer(DIRECT_ALIGN)
    buf[:5] = b"paren"
    pid = os.fork()
    if pid == 0:  # the child writes its copy and leaves at once
        buf[:5] = b"child"
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert buf[:5] == b"paren"


def test_a_small_file_turns_o_direct_on_once_and_never_back(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its one direct read comes up short at its end and nothing reads it again: the
    flag is not turned back off (two system calls a file, most files of a run)."""
    data = os.urandom(DIRECT_ALIGN + 904)
    src = folder / "src"
    src.write_bytes(data)
    _uncache(src)
    spy = ReadSpy(monkeypatch)
    sets: list[int] = []
    real_fcntl = fcntl.fcntl

    def counting(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL:
            sets.append(arg)
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", counting)
    copied = copy_file(os.fsencode(src), os.fsencode(folder / "dst"))
    assert (folder / "dst").read_bytes() == data and copied.size == len(data)
    assert spy.direct == [True]
    assert len(sets) == 1 and sets[0] & os.O_DIRECT


def test_a_read_after_a_short_direct_one_goes_through_the_cache(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(5000)
    src = folder / "src"
    src.write_bytes(data)
    _uncache(src)
    fd = os.open(src, os.O_RDONLY)
    try:
        source = copymod._Source(fd, len(data))
        spy = ReadSpy(monkeypatch)
        view = memoryview(private_buffer(BUF))
        assert source.read_full(view, len(data)) == len(data)
        assert bytes(view[:len(data)]) == data
        assert source.read_full(view, 100) == 0  # the end, asked through the cache
        assert spy.direct == [True, False]
    finally:
        os.close(fd)
