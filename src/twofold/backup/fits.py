"""Whether the target can name the copy of a set path: a run skips (and names) a path it
cannot, rather than failing on it, so one path never stops a set for good."""

from __future__ import annotations

import errno

from twofold.core.paths import NAME_MAX, PATH_MAX
from twofold.sets.target import SetDir

RUN_NAME_SLACK = 8
"""Bytes kept free for a later run's versions/ folder name (a "-2" after a clash)."""


def name_problem(sd: SetDir, run_name: str, rel: bytes) -> str | None:
    """Why the drive cannot hold a copy of set path `rel` (a name over its limit after
    encoding, or a path over PATH_MAX in current/ or, later, in versions/), or None."""
    stored = sd.namer.rel(rel)
    limit = min(sd.namer.profile.name_max, NAME_MAX)
    units = sd.namer.profile.name_units  # the namer fits UTF-16 names to the drive itself
    if units != "utf16" and len(stored) > limit:  # else no name in it can be longer
        longest = max(len(n) for n in stored.split(b"/"))
        if longest > limit:
            return f"a name of {longest} bytes is too long for the target; not copied"
    size = len(sd.ver(run_name, rel)) + RUN_NAME_SLACK
    if size >= PATH_MAX:
        return (f"its copy's path on the target would be {size} bytes, longer than the "
                f"{PATH_MAX - 1} a path may have; not copied. Back it up from a shorter "
                "folder, or to a target folder with a shorter path")
    return None


ITEM_ERRNOS = (errno.ENAMETOOLONG, errno.EILSEQ)
"""Errors that concern one name, not the drive: an interrupted run's operation failing so
is dropped by the next run (engine.recover) rather than failing every later run."""
