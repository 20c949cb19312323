"""Whether a chunk's data is all zero bytes (such chunks are not stored: restore writes
zeros, or leaves a hole). One test for block-level and file-level imaging and for the
space estimate."""

from __future__ import annotations

_ZEROS = memoryview(bytes(16 << 20))


def all_zero(data: bytes) -> bool:
    """True when every byte of `data` is zero (compared with zeros, which stops at the
    first other byte; strip() or count() would go through the whole chunk)."""
    if len(data) <= len(_ZEROS):
        return data == _ZEROS[:len(data)]
    return not data.strip(b"\0")
