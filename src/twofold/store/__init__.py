"""Adapters for where data is kept: the backup catalog, target folders, file copying."""
