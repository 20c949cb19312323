"""Adapters that read file systems and block devices: scanning, metadata, disk facts."""
