"""Command-line front end: parses options, renders progress with Rich, maps errors to exit codes."""

import gc

from twofold.cli.lazy_rich import install

# The thresholds app.main() sets for a run, already for the imports of typer, Rich and the
# engine (some 350 modules, whose objects all live to the end): about 9 ms of every start.
gc.set_threshold(50_000, 20, 100)
install()  # before typer is first imported (see lazy_rich)
