"""What the `twofold image ...` commands share: options, the progress sink, the target."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twofold.cli.common import err
from twofold.cli.render import RichProgress
from twofold.core.progress import NullProgress, Progress

if TYPE_CHECKING:
    from twofold.image.repo import Target

Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
TARGET_HELP = "Where the images are: a folder, sftp://user@host[:port]/path or s3://bucket/prefix."
Endpoint = Annotated[str | None, typer.Option(
    "--s3-endpoint", envvar="AWS_ENDPOINT_URL", show_envvar=True, show_default=False,
    help="S3 endpoint URL for non-AWS storage (Ceph, MinIO).")]


class ImageProgress(RichProgress):
    """Bars by bytes only (images count bytes, not files)."""

    def _files_text(self) -> str:
        return ""


def progress_for(as_json: bool) -> Progress:
    """Bars on stderr, or nothing for --json."""
    return NullProgress() if as_json else ImageProgress(err)


def target_of(text: str, endpoint: str | None, key_file: Path | None = None,
              encrypt: bool = False) -> Target:
    """The store a TARGET names, unlocked when encrypted (cli/image_key.py; `encrypt`:
    a new store is made encrypted)."""
    from twofold.blobs.remote import open_target
    from twofold.cli.image_key import unlocked

    return unlocked(open_target(text, endpoint) if endpoint else text, key_file, encrypt)
