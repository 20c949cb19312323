"""Rescue media: a small Debian live system with the same twofold, built from Debian
packages and a wheel of this checkout, and written to USB sticks."""
