"""Whether a chunk's data is all zero bytes (such chunks are not stored: restore writes
zeros, or leaves a hole), for file-level imaging and the space estimate. Block-level
imaging, which hashes every chunk anyway, compares the id with that of zeros instead
(Codec.is_zero)."""

from __future__ import annotations

_ZEROS = memoryview(bytes(16 << 20))


def all_zero(data: bytes | memoryview) -> bool:
    """True when every byte of `data` is zero (compared with zeros piece by piece, which
    stops at the first other byte; strip() or count() would go through the whole chunk)."""
    step = len(_ZEROS)
    return all(data[i:i + step] == _ZEROS[:len(data[i:i + step])]
               for i in range(0, len(data), step))
