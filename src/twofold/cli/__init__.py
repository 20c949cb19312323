"""Command-line front end: parses options, renders progress with Rich, maps errors to exit codes."""

from twofold.cli.lazy_rich import install

install()  # before typer is first imported (see lazy_rich)
