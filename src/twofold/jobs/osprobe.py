"""Take the OS fingerprint that decides whether an image is due: the installed packages
(dpkg, rpm or pacman), the running kernel and the files under /boot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from twofold.core.oschange import (
    VOLATILE_BOOT,
    parse_dpkg_status,
    parse_name_version_lines,
    parse_pacman_local,
)


def packages(root: Path) -> tuple[str, dict[str, str]]:
    """(database kind, name -> version) of the system at `root`; ("none", {}) if unknown."""
    dpkg = root / "var/lib/dpkg/status"
    if dpkg.is_file():
        return "dpkg", parse_dpkg_status(dpkg.read_text(encoding="utf-8", errors="replace"))
    pacman = root / "var/lib/pacman/local"
    if pacman.is_dir():
        return "pacman", parse_pacman_local([p.name for p in pacman.iterdir() if p.is_dir()])
    if shutil.which("rpm") and ((root / "var/lib/rpm").is_dir()
                                or (root / "usr/lib/sysimage/rpm").is_dir()):
        r = subprocess.run(["rpm", "--root", str(root), "-qa", "--qf",
                            "%{NAME}.%{ARCH} %{EPOCHNUM}:%{VERSION}-%{RELEASE}\n"],
                           capture_output=True, text=True, check=False, timeout=120)
        return "rpm", parse_name_version_lines(r.stdout)
    return "none", {}


def boot_files(root: Path) -> dict[str, str]:
    """Every file under /boot (EFI partition included when mounted there): size and mtime."""
    found: dict[str, str] = {}
    base = root / "boot"
    for folder, _dirs, files in os.walk(base):
        for name in files:
            if name in VOLATILE_BOOT:
                continue
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            found[os.path.relpath(path, base)] = f"{st.st_size}:{st.st_mtime_ns}"
    return found


def fingerprint(root: Path = Path("/"), now_ns: int = 0) -> dict[str, Any]:
    """The fingerprint of the system at `root` (the running kernel only for '/')."""
    kind, pkgs = packages(root)
    kernel = os.uname().release if root == Path("/") else None
    return {"taken_ns": now_ns, "package_db": kind, "packages": pkgs, "kernel": kernel,
            "boot": boot_files(root)}
