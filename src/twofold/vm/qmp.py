"""A minimal client for QEMU's machine protocol (QMP) over a unix socket."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class QmpError(Exception):
    """QEMU answered a command with an error, or the connection broke."""


class Qmp:
    """One QMP session: greeting, capabilities, then commands one at a time."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        self._read()  # the greeting
        self.command("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise QmpError("QEMU closed the QMP connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        return msg

    def command(self, name: str, **args: Any) -> Any:
        """Run one command and return its result; events in between are skipped."""
        req: dict[str, Any] = {"execute": name}
        if args:
            req["arguments"] = args
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while True:
            msg = self._read()
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise QmpError(f"{name}: {msg['error'].get('desc', msg['error'])}")

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()
