"""A catalog kept in a local working copy and published whole to a drive whose driver
cannot rewrite files in place.

fusefat (how this kind of machine mounts FAT32) loses data when a file is reopened and
written at an offset, which is how SQLite writes; yet it writes new files from start to end
correctly. On such a drive the catalog is worked on in a local copy, and after every
committed transaction the copy is written to `catalog.sqlite.new` from start to end,
flushed, and renamed over `catalog.sqlite`: the drive always holds a whole, committed
catalog.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from twofold.fsinfo.disk import copy_durably, fsync_dir


class Mirror:
    """The local working copy of a catalog on a drive that only takes whole files."""

    def __init__(self, target_path: str) -> None:
        self.target_path = target_path
        fd, self.local = tempfile.mkstemp(prefix="twofold-catalog-", suffix=".sqlite")
        os.close(fd)
        try:
            if os.path.exists(target_path):
                shutil.copyfile(target_path, self.local)
        except BaseException:
            self.drop()
            raise

    def publish(self) -> None:
        """Write the working copy to the drive as a new file, then rename it into place."""
        new = self.target_path + ".new"
        copy_durably(self.local, new)
        os.replace(new, self.target_path)
        fsync_dir(os.path.dirname(self.target_path) or ".")

    def drop(self) -> None:
        """Remove the working copy and the journal SQLite keeps beside it (PERSIST mode)."""
        for path in (self.local, self.local + "-journal"):
            with contextlib.suppress(OSError):
                os.unlink(path)
