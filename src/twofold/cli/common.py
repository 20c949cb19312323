"""What every command shares: consoles, error handling with exit codes, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from twofold.core.errors import ExitCode, TwofoldError
from twofold.core.humanize import size, when
from twofold.core.models import Issue
from twofold.core.names import TargetProfile
from twofold.core.paths import show
from twofold.jobs.config import Config, load

# Pipes and logs get wide lines rather than Rich's default of 80 columns.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)

__all__ = ["config_of", "err", "handles_errors", "issue_dict", "local_tz", "out", "print_issues",
           "print_json", "profile_json", "size", "when"]

AllowSystemDisk = Annotated[bool, typer.Option(
    "--allow-system-disk",
    help="Allow a first run into an empty mount point on the system disk.")]
NewDrive = Annotated[bool, typer.Option(
    "--new-drive",
    help="Start anew here although the set or store was on another drive before.")]
"""The drive checks' two overrides, shared by `backup` and `image create`."""

P = ParamSpec("P")
R = TypeVar("R")


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn twofold's errors into a clear message on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TwofoldError as e:
            _report(e)
        except KeyboardInterrupt:
            err.print("[bold red]interrupted.[/] Nothing kept is damaged; the next run "
                      "finishes the job.")
            raise typer.Exit(130) from None
        except OSError as e:
            err.print(f"[bold red]error:[/] {e.strerror or e}"
                      + (f": {e.filename}" if e.filename else ""))
            raise typer.Exit(int(ExitCode.FAILED)) from None
        except Exception as e:  # a catalog error that no engine put in words
            sqlite3 = sys.modules.get("sqlite3")
            if sqlite3 is None or not isinstance(e, sqlite3.DatabaseError):
                raise
            from twofold.sets.rows import catalog_error

            _report(catalog_error(e, "of this backup set (catalog.sqlite on the target)"))

    return wrapper


def _report(e: TwofoldError) -> NoReturn:
    err.print(f"[bold red]error:[/] {e.message}", markup=True)
    if e.hint:
        err.print(f"  {e.hint}", markup=False)
    raise typer.Exit(int(e.exit_code)) from None


def config_of(ctx: typer.Context) -> Config:
    """The config selected by --config / TWOFOLD_CONFIG (or the default path)."""
    path = (ctx.obj or {}).get("config")
    return load(Path(path) if path else None)


def local_tz() -> Any:
    """The local time zone."""
    return datetime.now().astimezone().tzinfo


def issue_dict(i: Issue) -> dict[str, str]:
    """An issue for --json."""
    return {"path": show(i.path), "kind": i.kind, "message": i.message}


def print_json(data: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def profile_json(profile: TargetProfile | None) -> dict[str, Any] | None:
    """What a target drive can hold, for --json (None when not known)."""
    if profile is None:
        return None
    data: dict[str, Any] = json.loads(profile.to_json())
    data["summary"] = profile.summary()
    return data


def print_issues(issues: list[Issue], title: str, limit: int = 200) -> None:
    """List issues under a title (the first `limit` of them)."""
    if not issues:
        return
    err.print(f"[yellow]{title} ({len(issues)}):[/]")
    for i in issues[:limit]:
        err.print(f"  {i.kind:9} {show(i.path)}: {i.message}", markup=False)
    if len(issues) > limit:
        err.print(f"  ... and {len(issues) - limit} more (use --json for all)")
