"""Numbers in words for people: sizes in decimal units, counts with their noun."""

from __future__ import annotations


def human_size(n: float) -> str:
    """Bytes in a human unit (decimal, as drives are sold): 512 B, 1.5 MB, 2.0 TB."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """"1 file", "2 files", "1,000 copies" (`nouns` for an irregular plural)."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"
