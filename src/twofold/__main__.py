"""Allows `python -m twofold`."""

from twofold.cli.app import main

main()
