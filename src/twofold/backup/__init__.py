"""The backup engine: plan, copy, restore, verify and prune exact-copy backups."""
