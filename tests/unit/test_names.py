"""How names are stored on drives that cannot hold every name (core/names.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from twofold.core.names import WINDOWS_CHARS, Namer, TargetProfile, encode_name, too_large

EXFAT = TargetProfile(fs_type="exfat", case_insensitive=True, windows_names=True,
                      name_units="utf16", bytes_names=False, symlinks=False, modes=False)
FAT32 = TargetProfile(fs_type="fat32", case_insensitive=True, windows_names=True,
                      name_units="utf16", bytes_names=False, unicode_names=False,
                      max_file_size=(4 << 30) - 1)
EXT4 = TargetProfile(fs_type="ext4")

names = st.binary(min_size=1, max_size=255).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))


def _windows_ok(stored: bytes, profile: TargetProfile) -> None:
    text = stored.decode("utf-8")  # never undecodable bytes
    assert not set(text) & set(WINDOWS_CHARS)
    assert not any(ord(c) < 0x20 for c in text)
    assert not text.endswith((".", " "))
    assert text.split(".")[0].upper() not in ("CON", "PRN", "AUX", "NUL", "COM1", "LPT1")
    assert len(text.encode("utf-16-le")) // 2 <= 255
    if not profile.unicode_names:
        assert text.isascii()


@given(names)
def test_every_name_becomes_one_a_windows_drive_takes(name: bytes) -> None:
    for profile in (EXFAT, FAT32):
        _windows_ok(encode_name(name, profile), profile)
        assert Namer(profile).name(name) == encode_name(name, profile)


@given(names)
def test_a_posix_drive_stores_every_name_as_it_is(name: bytes) -> None:
    assert Namer(EXT4).rel(b"top/" + name) == b"top/" + name
    assert Namer(EXT4).identity


def test_encoded_names_stay_readable() -> None:
    assert encode_name(b"a:b?.txt", EXFAT) == "a：b？.txt".encode()
    assert encode_name(b"CON.txt", EXFAT) == "COＮ.txt".encode()
    assert encode_name(b"caf\xc3\xa9.txt", EXFAT) == b"caf\xc3\xa9.txt"
    assert encode_name(b"caf\xc3\xa9.txt", FAT32) == b"caf%C3%A9.txt"
    assert encode_name(b"latin\xe9", EXFAT) == b"latin%E9"
    assert encode_name(b"plain name.odt", EXFAT) == b"plain name.odt"


def test_case_twins_get_names_the_drive_keeps_apart() -> None:
    namer = Namer(EXFAT)
    paths = [b"docs/Report.txt", b"docs/report.txt", b"docs/REPORT.TXT"]
    for p in paths:
        namer.add_twin(p, namer.twin_name(p))
    folded = {namer.fold(p) for p in paths}
    assert len(folded) == 3
    assert all(namer.rel(p).endswith((b".txt", b".TXT")) for p in paths)
    # a folder's stored name carries over to everything inside it
    namer.add_twin(b"Photos", b"Photos~abc123")
    assert namer.rel(b"Photos/a:b") == "Photos~abc123/a：b".encode()


def test_a_profile_survives_the_catalog_and_names_what_is_too_large() -> None:
    assert TargetProfile.from_json(FAT32.to_json()) == FAT32
    assert too_large(FAT32, 4 << 30) is not None
    assert too_large(FAT32, (4 << 30) - 1) is None
    assert too_large(EXFAT, 1 << 40) is None
    assert "no symlinks" in EXFAT.summary() and "case-insensitive" in EXFAT.summary()
