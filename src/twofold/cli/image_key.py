"""The passphrase of an encrypted image store on the command line: --key-file, the
environment (TWOFOLD_PASSPHRASE) or the terminal; and the store a TARGET names, unlocked."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twofold.core.errors import TwofoldError, UsageError

if TYPE_CHECKING:
    from twofold.blobs.objects import ObjectStore
    from twofold.image.repo import Target

KeyFile = Annotated[Path | None, typer.Option(
    "--key-file", show_default=False,
    help="A file holding the passphrase of an encrypted store (else TWOFOLD_PASSPHRASE, "
         "else it is asked for at the terminal).")]
Encrypt = Annotated[bool, typer.Option(
    "--encrypt", help="Make a new store encrypted (AES-256-GCM, passphrase via Argon2id).")]
NEW_ENV = "TWOFOLD_NEW_PASSPHRASE"
NewKeyFile = Annotated[Path | None, typer.Option(
    "--new-key-file", show_default=False,
    help="A file holding the new passphrase (else TWOFOLD_NEW_PASSPHRASE, else it is "
         "asked for twice at the terminal).")]


class PassphraseMismatch(TwofoldError):
    """The passphrase typed twice at the terminal was not the same: nothing was written."""


def interactive() -> bool:
    """True when a person can type a passphrase on this terminal."""
    return sys.stdin.isatty()


def read_key_file(path: Path) -> bytes:
    """The passphrase in a key file (one trailing newline dropped)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read the key file {path}: {e.strerror or e}") from None
    data = data[:-1] if data.endswith(b"\n") else data
    if not data:
        raise UsageError(f"the key file {path} is empty")
    return data


def ask(prompt: str, confirm: bool) -> bytes:
    """A passphrase typed at the terminal (twice when `confirm`)."""
    first = typer.prompt(prompt, hide_input=True, err=True)
    if confirm and typer.prompt("The same again", hide_input=True, err=True) != first:
        raise PassphraseMismatch("the two passphrases differ; nothing was written",
                                 "run the command again and type the same passphrase twice")
    if not first:
        raise UsageError("an empty passphrase is not allowed")
    return str(first).encode()


def passphrase(key_file: Path | None, where: str, confirm: bool = False,
               env: str = "TWOFOLD_PASSPHRASE") -> bytes:
    """The passphrase from `key_file`, else the environment variable `env`, else the
    terminal (twice when `confirm`); StoreLocked when none of them can give it."""
    from twofold.vault.objects import StoreLocked

    if key_file is not None:
        return read_key_file(key_file)
    if os.environ.get(env):
        return os.environ[env].encode()
    if interactive():
        return ask(f"Passphrase for {where}", confirm)
    raise StoreLocked(f"the image store at {where} is encrypted and no passphrase was given",
                      f"set {env}, or give a file holding it with --key-file")


def passphrase_for(target: str, endpoint: str | None, key_file: Path | None) -> bytes | None:
    """The passphrase of the store at `target` when it is encrypted (None when it is not),
    for engines that open the store in a process of their own (mount, files)."""
    from twofold.blobs.objects import TargetMissing
    from twofold.blobs.remote import open_target
    from twofold.vault.objects import key_names

    try:
        objects = open_target(target, endpoint)
    except TargetMissing:
        return None  # the engine says so
    return passphrase(key_file, objects.describe()) if key_names(objects) else None


def unlocked(target: Target, key_file: Path | None, encrypt: bool = False) -> Target:
    """`target` as engines take it: an encrypted store opened with its passphrase; with
    `encrypt`, a new store gets its key first (the passphrase asked twice)."""
    from twofold.blobs.objects import TargetMissing
    from twofold.blobs.remote import open_target
    from twofold.chunks.indexfiles import STORE_FILE
    from twofold.vault.objects import key_names, make_keys, unlock

    try:
        objects: ObjectStore = open_target(target) if isinstance(target, str) else target
    except TargetMissing:
        if encrypt:
            raise
        return target  # the engine says so, in its order of checks
    if key_names(objects):
        return unlock(objects, passphrase(key_file, objects.describe()))
    if not encrypt:
        return objects
    if objects.exists(STORE_FILE):
        raise UsageError(f"the image store at {objects.describe()} is not encrypted",
                         "--encrypt makes a new store; give an empty folder or prefix")
    return make_keys(objects, passphrase(key_file, objects.describe(), confirm=True))
