"""Words and numbers for people: sizes in human units and counts with the right noun."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """Bytes in a human (decimal) unit: 950 B, 12.3 MB."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def plural(count: int, word: str, words: str | None = None, sep: str = ",") -> str:
    """`count` and the noun in the form the count needs: "1 file", "2 files", "3 copies"
    (give `words` when the plural is not word + "s"); `sep` groups thousands ("" for none)."""
    noun = word if count == 1 else (words or f"{word}s")
    number = f"{count:,}" if sep == "," else str(count)
    return f"{number} {noun}"
