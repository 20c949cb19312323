"""How many threads read, (de)compress and hash chunks at once in create, verify, restore
and export: zstd and BLAKE3 release the GIL, so one thread's read overlaps another's
hashing. Its own module so that a command that only reads chunks need not import create."""

from __future__ import annotations

import os

WORKERS = min(16, max(4, 2 * (os.cpu_count() or 2)))
