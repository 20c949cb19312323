"""`twofold image passwd`: change the passphrase of an encrypted image store; only its key
file is rewritten (the master key stays, so no chunk or manifest is touched)."""

from __future__ import annotations

from typing import Annotated

import typer

from twofold.cli.common import handles_errors, out
from twofold.cli.image_cmd import image_app
from twofold.cli.image_common import TARGET_HELP, Endpoint
from twofold.cli.image_key import NEW_ENV, KeyFile, NewKeyFile, passphrase


@image_app.command("passwd")
@handles_errors
def passwd_command(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    key_file: KeyFile = None,
    new_key_file: NewKeyFile = None,
    s3_endpoint: Endpoint = None,
) -> None:
    """Change the passphrase of the encrypted store at TARGET: the old one from --key-file,
    TWOFOLD_PASSPHRASE or the terminal; the new one from --new-key-file,
    TWOFOLD_NEW_PASSPHRASE or the terminal (typed twice). The data is not rewritten."""
    from twofold.blobs.remote import open_target
    from twofold.vault.objects import StoreLocked, change_passphrase, key_names

    objects = open_target(target, s3_endpoint)
    where = objects.describe()
    if not key_names(objects):
        raise StoreLocked(f"the image store at {where} is not encrypted",
                          "only an encrypted store (image create --encrypt) has a passphrase")
    old = passphrase(key_file, where)
    new = passphrase(new_key_file, f"{where} (new)", confirm=True, env=NEW_ENV)
    name = change_passphrase(objects, old, new)
    out.print(f"passphrase changed: {where}/{name}", markup=False)
