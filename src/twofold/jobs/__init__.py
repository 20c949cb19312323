"""When and where to run: configuration, the system clock, schedules (later)."""
