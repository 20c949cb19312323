"""Pure layer: models, diffing, retention rules and formats; no I/O and no clock."""
