"""Folders a run created in current/, and the names it has put in each, so that a new
file going into one of them is renamed into place without looking for it first.

Looking costs little on ext4, but on exFAT through FUSE each look for a missing name scans
the whole folder: a first run to such a drive looked twice per file (for a case twin,
then before the rename) and spent a sixth of its time there (docs/DESIGN.md, "Folders a
run made need no looks"). A folder this run made was empty when made, and while the run
holds the set's lock only the run puts names in it, so those names are all it can hold.

Only the folders along the path being applied are kept: changes come in path order and
the paths inside a folder are contiguous in that order, so a folder the run has moved past
is never written again (if it were, it would only be looked in as before). Names are
compared folded more widely than any drive folds them (upper case, then casefold), so a
name a drive would take as one already there is never taken for a new one.
"""

from __future__ import annotations

import os


def _key(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape").upper().casefold()


class Fresh:
    """The folders (as paths on the target) this run made, each with the folded names put
    in it so far."""

    def __init__(self) -> None:
        self._dirs: dict[bytes, set[str]] = {}
        self._settled: bytes | None = None  # a folder whose new names drop no folder

    def absent(self, path: bytes) -> bool:
        """True when `path` surely does not exist: its folder is one this run made and no
        name the drive could take as `path`'s was put there."""
        parent, name = os.path.split(path)
        names = self._dirs.get(parent)
        return names is not None and _key(name) not in names

    def made(self, path: bytes) -> None:
        """This run made the folder `path` (nothing was there): remember it, empty."""
        self.claim(path)
        self._dirs[path] = set()
        self._settled = None

    def claim(self, path: bytes) -> None:
        """A name now taken in its folder; folders other than `path` and those on the way
        to it are dropped.

        Once that is done for a path not itself a kept folder, every folder kept is on the
        way to its folder, so another name in the same folder drops none: most files of a
        run go into the folder of the file before them, and skip the look at each kept
        folder."""
        parent, name = os.path.split(path)
        if parent != self._settled:
            for folder in [d for d in self._dirs if not path.startswith(d) or
                           (path != d and path[len(d):len(d) + 1] != b"/")]:
                del self._dirs[folder]
            self._settled = None if path in self._dirs else parent
        names = self._dirs.get(parent)
        if names is not None:
            names.add(_key(name))
