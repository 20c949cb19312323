"""The error tree: each deliberate error carries its message, a hint and its exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in README.md."""

    OK = 0
    FAILED = 1
    USAGE = 2
    PARTIAL = 3
    ATTENTION = 4  # status: a job is overdue or failing


class TwofoldError(Exception):
    """An error with a message for the user, a hint on what to do, and an exit code."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  {self.hint}" if self.hint else self.message


class UsageError(TwofoldError):
    """The command line or the config asks for something that cannot be: exit 2."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The config file cannot be read or has a wrong line."""


class TargetError(TwofoldError):
    """The backup drive is missing, full, read-only or went away during the run."""


class TargetFullError(TargetError):
    """The backup drive has no space left."""


class CatalogError(TwofoldError):
    """The catalog on the target is missing, damaged or of an unknown format."""


class SafetyRefusal(TwofoldError):
    """A run was refused because it would likely destroy good backups."""


class RestoreError(TwofoldError):
    """A restore could not be carried out."""
