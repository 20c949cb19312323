"""When and where to run: the config, schedules and status, drives, run-on-connect."""
