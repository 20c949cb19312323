"""Figures in words for people: sizes in human units and local times, shared by the
front ends (cli/, web/)."""

from __future__ import annotations

from datetime import datetime


def when(ns: int | None) -> str:
    """A local time for tables."""
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def size(n: float) -> str:
    """Bytes in a human unit."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
