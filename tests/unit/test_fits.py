"""name_problem names a path one of whose names is longer than the drive allows, and only
such a path (its shortcut skips the look at each name when the whole path is short)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from twofold.backup.fits import name_problem
from twofold.core.names import Namer, TargetProfile
from twofold.sets.target import SetDir

LIMIT = 12

names = st.binary(min_size=1, max_size=2 * LIMIT).filter(
    lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b".."))


@given(st.lists(names, min_size=1, max_size=5))
@example([b"n" * LIMIT])  # as long as allowed, alone and with others
@example([b"n" * (LIMIT + 1)])
@example([b"a", b"n" * LIMIT])
@example([b"a", b"n" * (LIMIT + 1), b"b"])
def test_a_name_over_the_drive_limit_is_named_and_no_other(parts: list[bytes]) -> None:
    sd = SetDir("/t", "s")
    sd.namer = Namer(TargetProfile(name_max=LIMIT))
    why = name_problem(sd, "2026-12-06T000000Z", b"/".join(parts))
    longest = max(len(p) for p in parts)
    if longest > LIMIT:
        assert why == f"a name of {longest} bytes is too long for the target; not copied"
    else:
        assert why is None
