"""Errors of rescue media: building the ISO and writing it to a stick."""

from __future__ import annotations

from twofold.core.errors import TwofoldError, UsageError


class BuildError(TwofoldError):
    """The rescue ISO could not be built (a tool missing, a step failed): exit 1."""


class StickRefused(UsageError):
    """The disk named for the stick must not be overwritten (the system's own, mounted,
    too small): exit 2, nothing written."""


class StickWriteError(TwofoldError):
    """Writing the ISO to the stick failed or read back different: exit 1."""
