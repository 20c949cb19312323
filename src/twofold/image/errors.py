"""Errors of the image engine, each with its message, hint and exit code."""

from __future__ import annotations

from twofold.core.errors import ExitCode, RestoreError, TwofoldError, UsageError


class ImageRefused(TwofoldError):
    """The source or destination may not be used as it is (mounted, dirty, too small)."""


class SourceMissing(ImageRefused):
    """The source named on the command line does not exist: exit 2, as for any path."""

    exit_code = ExitCode.USAGE


class ImageNotFound(UsageError):
    """No image of that name in the store."""


class ImageExists(UsageError):
    """An image of that name is already in the store."""


class ImageDamaged(RestoreError):
    """A chunk an image needs is missing or fails its check."""


class SourceReadError(TwofoldError):
    """The source device or file could not be read."""
