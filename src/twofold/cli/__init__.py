"""Command-line front end: parses options, renders progress with Rich, maps errors to exit codes."""
