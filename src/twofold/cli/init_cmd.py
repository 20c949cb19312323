"""`twofold init`: write a commented config for the user's own folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twofold.cli.common import handles_errors, out
from twofold.core.errors import UsageError
from twofold.jobs.config import default_path, init_text, user_folders


@handles_errors
def init_command(
    ctx: typer.Context,
    to: Annotated[str | None, typer.Option("--to", help="Target folder for the backups.")]
    = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing config.")]
    = False,
) -> None:
    """Write a config whose default set is your Documents, Pictures, Music, Videos, Desktop."""
    given = (ctx.obj or {}).get("config")
    path = Path(given) if given else default_path()
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "edit it, or pass --force to replace it")
    folders = user_folders(Path.home())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(init_text(folders, to), encoding="utf-8")
    out.print(f"Wrote {path}")
    out.print("  sources: " + (", ".join(map(str, folders)) or
                               "none found; add some to 'sources'"))
    out.print("  target: " + (to or "not set; add 'target' or pass --to to backup"))
    out.print("Run it with: twofold backup")
