"""The export's NBD server spoken to directly: the handshake with and without structured
replies, reads, block status with several extents and with one, and errors answered
without losing the connection."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from twofold.core.errors import TwofoldError
from twofold.image.export_nbd import NbdServer

SIZE = 1 << 20
DATA = [(4096, 12288), (65536, 131072)]  # allocated ranges


class Source:
    """1 MiB: the byte at offset i is i % 251 inside DATA, zero elsewhere; reads of the
    last 4 KiB fail."""

    size = SIZE
    allocated = DATA

    def read(self, offset: int, length: int) -> list[memoryview]:
        if offset + length > SIZE - 4096:
            raise TwofoldError("chunk 00ff is damaged")
        if offset == 333:
            raise ValueError("a bug")
        data = self.plain(offset, length)  # in two buffers, as a reader gives them
        return [memoryview(data[:length // 3]), memoryview(data[length // 3:])]

    @staticmethod
    def plain(offset: int, length: int) -> bytes:
        return bytes((i % 251) if any(s <= i < e for s, e in DATA) else 0
                     for i in range(offset, offset + length))


class Client:
    def __init__(self, path: Path, structured: bool, allocation: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        assert self.recv(8) == b"NBDMAGIC"
        magic, flags = struct.unpack(">QH", self.recv(10))
        assert magic == 0x49484156454F5054 and flags & 1
        self.sock.sendall(struct.pack(">I", 3))
        if structured:
            assert self.option(8, b"") == [(1, b"")]
        if allocation:
            query = struct.pack(">I", 0) + struct.pack(">I", 1) + \
                struct.pack(">I", 15) + b"base:allocation"
            assert self.option(10, query) == [(4, struct.pack(">I", 1) + b"base:allocation"),
                                              (1, b"")]
        assert self.option(42, b"") == [((1 << 31) + 1, b"")]  # unknown: unsupported
        replies = self.option(7, struct.pack(">I", 0) + struct.pack(">H", 0))
        assert replies[-1] == (1, b"")
        kind, size, tflags = struct.unpack(">HQH", replies[0][1])
        assert (kind, size) == (0, SIZE) and tflags & 2  # read only

    def recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            got = self.sock.recv(n - len(data))
            assert got, "the server closed the connection"
            data += got
        return data

    def option(self, opt: int, data: bytes) -> list[tuple[int, bytes]]:
        self.sock.sendall(struct.pack(">QII", 0x49484156454F5054, opt, len(data)) + data)
        out = []
        while True:
            magic, got_opt, kind, n = struct.unpack(">QIII", self.recv(20))
            assert magic == 0x3E889045565A9 and got_opt == opt
            out.append((kind, self.recv(n)))
            if kind not in {3, 4}:  # INFO and META_CONTEXT come before the ACK
                return out

    def request(self, kind: int, offset: int, length: int, flags: int = 0) -> None:
        self.sock.sendall(struct.pack(">IHHQQI", 0x25609513, flags, kind, 7, offset, length))

    def structured(self) -> tuple[int, int, bytes]:
        magic, flags, kind, handle, n = struct.unpack(">IHHQI", self.recv(20))
        assert magic == 0x668E33EF and handle == 7 and flags & 1
        return kind, n, self.recv(n)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[NbdServer, Path]]:
    path = tmp_path / "nbd.sock"
    srv = NbdServer(Source(), str(path), workers=2)
    srv.start()
    yield srv, path
    srv.stop()


def test_structured_reads_and_block_status(server: tuple[NbdServer, Path]) -> None:
    srv, path = server
    c = Client(path, structured=True, allocation=True)
    c.request(0, 4000, 200)
    kind, _n, payload = c.structured()
    assert kind == 1 and struct.unpack(">Q", payload[:8])[0] == 4000
    assert payload[8:] == Source.plain(4000, 200) and payload[8:8 + 96] == bytes(96)
    c.request(7, 0, 200000)  # every extent up to the end of the request
    kind, _n, payload = c.structured()
    assert kind == 5 and struct.unpack(">I", payload[:4])[0] == 1
    got = [struct.unpack(">II", payload[i:i + 8]) for i in range(4, len(payload), 8)]
    assert got == [(4096, 3), (8192, 0), (53248, 3), (65536, 0), (200000 - 131072, 3)]
    c.request(7, 6000, SIZE - 6000, flags=1 << 3)  # REQ_ONE: the rest of its extent
    kind, _n, payload = c.structured()
    assert struct.unpack(">III", payload) == (1, 12288 - 6000, 0)
    c.request(0, SIZE - 100, 50)  # the source fails: EIO, and the connection lives on
    kind, _n, payload = c.structured()
    assert kind == (1 << 15) + 1 and struct.unpack(">I", payload[:4])[0] == 5
    assert b"chunk 00ff is damaged" in payload
    assert srv.failure is not None and "00ff" in srv.failure.message
    c.request(0, 333, 1)  # any other failure: EIO too, and it is kept to be shown
    kind, _n, payload = c.structured()
    assert kind == (1 << 15) + 1 and struct.unpack(">I", payload[:4])[0] == 5
    assert "00ff" in srv.failure.message  # the first failure is the one shown
    c.request(0, SIZE - 10, 20)  # beyond the end: EINVAL
    kind, _n, payload = c.structured()
    assert kind == (1 << 15) + 1 and struct.unpack(">I", payload[:4])[0] == 22
    c.request(0, 65536, 8)
    assert c.structured()[2][8:] == bytes(i % 251 for i in range(65536, 65544))
    assert srv.served == 200 + 8
    c.request(2, 0, 0)  # disconnect


def test_simple_replies_without_structured(server: tuple[NbdServer, Path]) -> None:
    srv, path = server
    c = Client(path, structured=False, allocation=False)
    c.request(0, 333, 1)
    assert struct.unpack(">IIQ", c.recv(16)) == (0x67446698, 5, 7)
    assert srv.failure is not None
    assert srv.failure.message == "reading the image failed at byte 333: ValueError: a bug"
    c.request(0, 8190, 4)
    magic, error, handle = struct.unpack(">IIQ", c.recv(16))
    assert (magic, error, handle) == (0x67446698, 0, 7)
    assert c.recv(4) == bytes(i % 251 for i in range(8190, 8194))
    c.request(7, 0, 4096)  # no block status without the context: EINVAL
    assert struct.unpack(">IIQ", c.recv(16)) == (0x67446698, 22, 7)
    c.request(1, 0, 0)  # a write to a read-only export: EPERM
    assert struct.unpack(">IIQ", c.recv(16)) == (0x67446698, 1, 7)
