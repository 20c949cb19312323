"""twofold: exact-copy incremental backups and incremental system images."""

import os

# numpy (block maps of images) loads OpenBLAS, which starts a thread per core that spins
# while it waits for work. twofold does no linear algebra: one thread. Measured on
# `image export` of 640 MB: 4 % of the CPU samples were that spinning; 0.1 s less.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
