"""Has the operating environment changed since the last image? Package databases (dpkg,
rpm, pacman), the kernel and the boot files, compared as fingerprints; pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# Files under /boot that change at every boot without the system changing.
VOLATILE_BOOT = ("grubenv",)


def parse_dpkg_status(text: str) -> dict[str, str]:
    """Installed packages ('name:arch' when multi-arch) and versions from dpkg's status."""
    found: dict[str, str] = {}
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in para.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            name = fields["Package"]
            arch = fields.get("Architecture", "all")
            key = name if arch in ("all", "") else f"{name}:{arch}"
            found[key] = fields.get("Version", "")
    return found


def parse_name_version_lines(text: str) -> dict[str, str]:
    """'name version' per line (the query format used for rpm)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, _, version = line.strip().partition(" ")
        if name:
            found[name] = version
    return found


def parse_pacman_local(entries: list[str]) -> dict[str, str]:
    """Package folders of pacman's local database, named name-version-release."""
    found: dict[str, str] = {}
    for entry in entries:
        parts = entry.rsplit("-", 2)
        if len(parts) == 3:
            found[parts[0]] = f"{parts[1]}-{parts[2]}"
    return found


def package_changes(old: dict[str, str], new: dict[str, str]) -> int:
    """How many packages were added, removed or changed version."""
    return sum(1 for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def date_of(ns: int) -> str:
    """The UTC date of a time, as reasons show it."""
    return datetime.fromtimestamp(ns / 1e9, UTC).date().isoformat()


def change_reason(old: dict[str, Any] | None, new: dict[str, Any],
                  image_ns: int | None) -> str | None:
    """Why the system differs from fingerprint `old` (taken with the image made at
    `image_ns`), or None when nothing changed. Fingerprints hold `packages` (name ->
    version), `kernel` (release) and `boot` (file -> size and mtime)."""
    if old is None:
        return None
    since = f" since the image of {date_of(image_ns)}" if image_ns else " since the last image"
    parts: list[str] = []
    n = package_changes(old.get("packages") or {}, new.get("packages") or {})
    if n:
        parts.append(f"{n} package{'' if n == 1 else 's'} changed")
    if old.get("kernel") and new.get("kernel") and old["kernel"] != new["kernel"]:
        parts.append(f"the kernel changed ({old['kernel']} -> {new['kernel']})")
    old_boot: dict[str, str] = old.get("boot") or {}
    new_boot: dict[str, str] = new.get("boot") or {}
    b = package_changes(old_boot, new_boot)
    if b and not n:
        parts.append(f"{b} boot file{'' if b == 1 else 's'} changed")
    return (", ".join(parts) + since) if parts else None
