"""A small read-only NBD server on a unix socket (fixed-newstyle handshake, structured
replies, the "base:allocation" block status), serving a disk whose bytes and allocation a
BlockSource gives: `qemu-img convert` reads an image from it straight into any format."""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Protocol

from twofold.core.errors import TwofoldError

_NBDMAGIC = b"NBDMAGIC"
_IHAVEOPT = 0x49484156454F5054
_REP_MAGIC = 0x3E889045565A9
_REQUEST_MAGIC = 0x25609513
_SIMPLE_MAGIC = 0x67446698
_STRUCTURED_MAGIC = 0x668E33EF
_FLAG_FIXED_NEWSTYLE, _FLAG_NO_ZEROES = 1, 2
_TFLAGS = 1 | 2  # NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY
_OPT_EXPORT_NAME, _OPT_ABORT, _OPT_INFO, _OPT_GO = 1, 2, 6, 7
_OPT_STRUCTURED_REPLY, _OPT_LIST_META, _OPT_SET_META = 8, 9, 10
_REP_ACK, _REP_INFO, _REP_META_CONTEXT = 1, 3, 4
_REP_ERR_UNSUP, _REP_ERR_INVALID = (1 << 31) + 1, (1 << 31) + 3
_INFO_EXPORT = 0
_CMD_READ, _CMD_DISC, _CMD_BLOCK_STATUS = 0, 2, 7
_CMD_FLAG_REQ_ONE = 1 << 3
_REPLY_FLAG_DONE = 1
_REPLY_OFFSET_DATA, _REPLY_BLOCK_STATUS, _REPLY_ERROR = 1, 5, (1 << 15) + 1
_STATE_HOLE_ZERO = 3
_ALLOCATION = b"base:allocation"
_CONTEXT_ID = 1
_IOV_MAX = 1024
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_SEND_BUFFER = 8 << 20
_MAX_EXTENTS = 4096  # descriptors in one block status reply (without REQ_ONE)


class BlockSource(Protocol):
    """What the server serves: `size` bytes, readable by range; `allocated` lists the
    sorted, disjoint (start, end) ranges that hold data (the rest reads as zeros)."""

    size: int
    allocated: list[tuple[int, int]]

    def read(self, offset: int, length: int) -> list[memoryview]:
        """`length` bytes from `offset` as buffers in order (sent without copying); a
        TwofoldError when they cannot be given."""


class _Closed(Exception):
    """The client went away."""


@dataclass
class _Conn:
    sock: socket.socket
    structured: bool = False
    allocation: bool = False  # the client selected base:allocation
    lock: threading.Lock = field(default_factory=threading.Lock)

    def recv(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            got = self.sock.recv(n - len(data))
            if not got:
                raise _Closed
            data += got
        return bytes(data)

    def send(self, *parts: bytes | memoryview) -> None:
        """Send `parts` in order, whole (scatter-gather, IOV_MAX buffers at a time)."""
        views = [memoryview(p) for p in parts if len(p)]
        i = 0
        with self.lock:
            while i < len(views):
                sent = self.sock.sendmsg(views[i:i + _IOV_MAX])
                while i < len(views) and sent >= len(views[i]):
                    sent -= len(views[i])
                    i += 1
                if sent:
                    views[i] = views[i][sent:]


class NbdServer:
    """Serves `source` read-only on the unix socket `path` until `stop`. The first error a
    read raised is kept in `failure` (the client sees EIO); `served` counts bytes read."""

    def __init__(self, source: BlockSource, path: str, workers: int = 4) -> None:
        self.source = source
        self.path = path
        self.failure: TwofoldError | None = None
        self.served = 0
        self._starts = [s for s, _ in source.allocated]
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="twofold-nbd")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        os.chmod(path, 0o600)
        self._listener.listen(4)
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._stopping = False
        self._count_lock = threading.Lock()

    def start(self) -> None:
        """Accept clients in a background thread."""
        t = threading.Thread(target=self._accept, name="twofold-nbd-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Close the socket and every connection; wait for the threads."""
        self._stopping = True
        for s in [self._listener, *self._conns]:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self._threads:
            t.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _accept(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(sock)
            t = threading.Thread(target=self._serve, args=(sock,), name="twofold-nbd",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, sock: socket.socket) -> None:
        for option in (_SO_SNDBUFFORCE, socket.SO_SNDBUF):  # replies of 2 MiB flow in one go
            with suppress(OSError):  # beyond net.core.wmem_max only as root (FORCE)
                sock.setsockopt(socket.SOL_SOCKET, option, _SEND_BUFFER)
                break
        conn = _Conn(sock)
        try:
            if self._handshake(conn):
                self._transmit(conn)
        except (_Closed, OSError, struct.error):
            pass
        finally:
            sock.close()

    # -- handshake ---------------------------------------------------------------------

    def _reply(self, conn: _Conn, opt: int, kind: int, data: bytes = b"") -> None:
        conn.send(struct.pack(">QIII", _REP_MAGIC, opt, kind, len(data)), data)

    def _handshake(self, conn: _Conn) -> bool:
        """Option haggling; True when the client moved on to transmission."""
        conn.send(_NBDMAGIC, struct.pack(">QH", _IHAVEOPT,
                                         _FLAG_FIXED_NEWSTYLE | _FLAG_NO_ZEROES))
        (client_flags,) = struct.unpack(">I", conn.recv(4))
        while True:
            magic, opt, length = struct.unpack(">QII", conn.recv(16))
            if magic != _IHAVEOPT or length > 1 << 16:
                return False
            data = conn.recv(length)
            if opt == _OPT_EXPORT_NAME:
                pad = b"" if client_flags & _FLAG_NO_ZEROES else bytes(124)
                conn.send(struct.pack(">QH", self.source.size, _TFLAGS), pad)
                return True
            if opt == _OPT_ABORT:
                self._reply(conn, opt, _REP_ACK)
                return False
            if opt in (_OPT_INFO, _OPT_GO):
                self._reply(conn, opt, _REP_INFO, struct.pack(
                    ">HQH", _INFO_EXPORT, self.source.size, _TFLAGS))
                self._reply(conn, opt, _REP_ACK)
                if opt == _OPT_GO:
                    return True
            elif opt == _OPT_STRUCTURED_REPLY and not data:
                conn.structured = True
                self._reply(conn, opt, _REP_ACK)
            elif opt in (_OPT_LIST_META, _OPT_SET_META):
                self._meta_context(conn, opt, data)
            else:
                self._reply(conn, opt, _REP_ERR_UNSUP)

    def _meta_context(self, conn: _Conn, opt: int, data: bytes) -> None:
        """Answer a list or set of meta contexts: only base:allocation is known."""
        if not conn.structured:
            self._reply(conn, opt, _REP_ERR_INVALID)
            return
        (name_len,) = struct.unpack_from(">I", data)
        pos = 4 + name_len
        (count,) = struct.unpack_from(">I", data, pos)
        pos += 4
        queries = []
        for _ in range(count):
            (n,) = struct.unpack_from(">I", data, pos)
            queries.append(data[pos + 4:pos + 4 + n])
            pos += 4 + n
        wanted = _ALLOCATION in queries or (opt == _OPT_LIST_META and (
            not queries or b"base:" in queries))
        if opt == _OPT_SET_META:
            conn.allocation = wanted
        if wanted:
            self._reply(conn, opt, _REP_META_CONTEXT,
                        struct.pack(">I", _CONTEXT_ID) + _ALLOCATION)
        self._reply(conn, opt, _REP_ACK)

    # -- transmission ------------------------------------------------------------------

    def _transmit(self, conn: _Conn) -> None:
        while True:
            magic, flags, kind, handle, offset, length = struct.unpack(
                ">IHHQQI", conn.recv(28))
            if magic != _REQUEST_MAGIC:
                return
            if kind == _CMD_DISC:
                return
            if offset + length > self.source.size:
                self._error(conn, handle, errno.EINVAL, "beyond the end of the disk")
            elif kind == _CMD_READ:
                self._pool.submit(self._read, conn, handle, offset, length)
            elif kind == _CMD_BLOCK_STATUS and conn.allocation and length:
                self._status(conn, handle, offset, length, bool(flags & _CMD_FLAG_REQ_ONE))
            else:
                self._error(conn, handle, errno.EINVAL if kind == _CMD_BLOCK_STATUS
                            else errno.EPERM, "read only")

    def _error(self, conn: _Conn, handle: int, code: int, message: str) -> None:
        if conn.structured:
            text = message.encode()[:4096]
            payload = struct.pack(">IH", code, len(text)) + text
            conn.send(struct.pack(">IHHQI", _STRUCTURED_MAGIC, _REPLY_FLAG_DONE, _REPLY_ERROR,
                                  handle, len(payload)), payload)
        else:
            conn.send(struct.pack(">IIQ", _SIMPLE_MAGIC, code, handle))

    def _read(self, conn: _Conn, handle: int, offset: int, length: int) -> None:
        try:
            parts = self.source.read(offset, length)
        except TwofoldError as err:
            if self.failure is None:
                self.failure = err
            self._reply_failed(conn, handle, err.message)
            return
        except Exception as err:  # a bug or an I/O error no layer named: still answered
            if self.failure is None:
                self.failure = TwofoldError(f"reading the image failed at byte {offset}: "
                                            f"{type(err).__name__}: {err}")
            self._reply_failed(conn, handle, str(err))
            return
        with self._count_lock:
            self.served += length
        try:
            if conn.structured:
                conn.send(struct.pack(">IHHQIQ", _STRUCTURED_MAGIC, _REPLY_FLAG_DONE,
                                      _REPLY_OFFSET_DATA, handle, 8 + length, offset), *parts)
            else:
                conn.send(struct.pack(">IIQ", _SIMPLE_MAGIC, 0, handle), *parts)
        except OSError:
            pass  # the client went away; its connection thread ends

    def _reply_failed(self, conn: _Conn, handle: int, message: str) -> None:
        with suppress(OSError):
            self._error(conn, handle, errno.EIO, message)

    def _status(self, conn: _Conn, handle: int, offset: int, length: int, one: bool) -> None:
        descriptors: list[bytes] = []
        pos, end = offset, offset + length
        while pos < end and len(descriptors) < (1 if one else _MAX_EXTENTS):
            run, data = self.run_at(pos)
            n = min(run, end - pos)
            descriptors.append(struct.pack(">II", n, 0 if data else _STATE_HOLE_ZERO))
            pos += n
        payload = struct.pack(">I", _CONTEXT_ID) + b"".join(descriptors)
        conn.send(struct.pack(">IHHQI", _STRUCTURED_MAGIC, _REPLY_FLAG_DONE,
                              _REPLY_BLOCK_STATUS, handle, len(payload)), payload)

    def run_at(self, pos: int) -> tuple[int, bool]:
        """(bytes from `pos` of the same kind (at most 2^32 - 4 KiB), whether they hold
        data)."""
        ranges = self.source.allocated
        i = bisect_right(self._starts, pos) - 1
        if i >= 0 and pos < ranges[i][1]:
            run, data = ranges[i][1] - pos, True
        else:
            nxt = ranges[i + 1][0] if i + 1 < len(ranges) else self.source.size
            run, data = nxt - pos, False
        return min(run, (1 << 32) - 4096), data
