"""How many threads read, (de)compress and hash chunks at once in create, verify, restore
and export: zstd and BLAKE3 release the GIL, so one thread's read overlaps another's
hashing. Its own module so that a command that only reads chunks need not import create."""

from __future__ import annotations

import os

WORKERS = min(16, max(4, 2 * (os.cpu_count() or 2)))

FILE_READERS = min(32, 3 * WORKERS)
"""Threads of file-level imaging, which mostly wait on a cold disk for small files (read
in C without the GIL): three to a worker keep more reads in flight (a first live image of
36,000 files took 3.05 s with 12 against 3.38 s with 4, bench/live_image.py's disk)."""
