"""FileReader.read_into: reads past the page cache where the file system allows it, and
the same bytes as pread everywhere (unaligned pieces, the end of a file, a file system
that refuses O_DIRECT); thread_buffer's reuse; Codec.is_zero."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from twofold.chunks.codec import Codec
from twofold.fsinfo.blockio import DIRECT_ALIGN, FileReader, thread_buffer

SIZE = 5 * DIRECT_ALIGN + 123  # ends off the alignment


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(SIZE)
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    return path, data


def test_aligned_reads_go_past_the_cache_and_match(image: tuple[Path, bytes]) -> None:
    path, data = image
    if _refuses_direct(path):
        pytest.skip("this folder's file system refuses O_DIRECT")
    with FileReader(str(path)) as reader:
        buf = thread_buffer(2 * DIRECT_ALIGN)
        assert reader.read_into(buf, DIRECT_ALIGN) == 2 * DIRECT_ALIGN
        assert bytes(buf) == data[DIRECT_ALIGN:3 * DIRECT_ALIGN]
        assert reader._direct_state == 1  # the O_DIRECT descriptor was used
    assert reader._direct is None  # closed with the reader


@pytest.mark.parametrize(("offset", "length", "aligned"), [
    (100, DIRECT_ALIGN, True),          # offset off the alignment
    (0, DIRECT_ALIGN + 7, True),        # length off the alignment
    (DIRECT_ALIGN, DIRECT_ALIGN, False),  # the buffer is not on a page
])
def test_unaligned_reads_go_through_the_cache(image: tuple[Path, bytes], offset: int,
                                              length: int, aligned: bool) -> None:
    path, data = image
    with FileReader(str(path)) as reader:
        buf = thread_buffer(length)
        assert reader.read_into(buf, offset, aligned=aligned) == length
        assert bytes(buf) == data[offset:offset + length]
        assert reader._direct_state == 0  # never tried


def test_the_end_of_a_file_reads_short(image: tuple[Path, bytes]) -> None:
    path, data = image
    start = 5 * DIRECT_ALIGN
    with FileReader(str(path)) as reader:
        buf = thread_buffer(DIRECT_ALIGN)  # aligned, but only 123 bytes are left
        got = reader.read_into(buf, start)
        assert got == SIZE - start
        assert bytes(buf[:got]) == data[start:]


def test_a_file_system_without_o_direct_still_reads(image: tuple[Path, bytes]) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm (tmpfs) here")
    data = image[1]
    copy = shm / f"twofold-direct-{os.getpid()}.img"
    copy.write_bytes(data)
    try:
        with FileReader(str(copy)) as reader:
            buf = thread_buffer(2 * DIRECT_ALIGN)
            assert reader.read_into(buf, 0) == 2 * DIRECT_ALIGN
            assert bytes(buf) == data[:2 * DIRECT_ALIGN]
            if _refuses_direct(copy):
                assert reader._direct_state == -1
    finally:
        copy.unlink()


def test_thread_buffer_is_reused_and_grows() -> None:
    small = thread_buffer(10)
    small[:3] = b"abc"
    again = thread_buffer(5)
    assert bytes(again[:3]) == b"abc"  # the same memory: callers finish with it first
    big = thread_buffer(3 << 20)
    assert len(big) == 3 << 20


def test_is_zero_compares_ids() -> None:
    codec = Codec(None)
    zeros = bytes(1 << 20)
    assert codec.is_zero(codec.id_of(zeros), zeros)
    view = memoryview(zeros)[:4096]
    assert codec.is_zero(codec.id_of(view), view)
    assert codec.is_zero(codec.id_of(b""), b"")
    for where in (0, 4096, (1 << 20) - 1):  # first byte, middle, last byte
        one = bytearray(zeros)
        one[where] = 1
        assert not codec.is_zero(codec.id_of(bytes(one)), bytes(one)), where
    odd = [bytes(n) for n in range(1, 200)]  # more lengths than are kept
    assert all(codec.is_zero(codec.id_of(z), z) for z in odd)
    assert len(codec._zero_ids) <= 64


def _refuses_direct(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        return True
    try:
        buf = thread_buffer(DIRECT_ALIGN)
        os.preadv(fd, [buf], 0)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
