"""Figures in words for people: sizes in human units and local times, shared by the
front ends (cli/, web/)."""

from __future__ import annotations

from datetime import datetime

from twofold.core.text import human_bytes


def when(ns: int | None) -> str:
    """A local time for tables."""
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S")


size = human_bytes
"""Bytes in a human unit (core/text.py)."""
