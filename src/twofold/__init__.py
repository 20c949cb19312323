"""twofold: exact-copy incremental backups and incremental system images."""

__version__ = "0.1.0"
