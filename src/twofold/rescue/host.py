"""What the rescue build takes from the host: its Debian release and apt sources, the tools
it runs, and wheels of this checkout (C module included) and of the versions of its
dependencies installed here."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twofold.rescue.errors import BuildError

TOOLS = {  # command: Debian package
    "mmdebstrap": "mmdebstrap", "mksquashfs": "squashfs-tools", "xorriso": "xorriso",
    "grub-mkimage": "grub-pc-bin (and grub-efi-amd64-bin)", "mkfs.fat": "dosfstools",
    "mcopy": "mtools",
}
FILES = {  # file: Debian package
    "/usr/lib/grub/i386-pc/boot_hybrid.img": "grub-pc-bin",
    "/usr/lib/shim/shimx64.efi.signed": "shim-signed",
    "/usr/lib/shim/mmx64.efi.signed": "shim-helpers-amd64-signed",
    "/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed": "grub-efi-amd64-signed",
}


def require_tools() -> None:
    """BuildError naming the Debian packages to install when a tool or file is missing."""
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None}
                     | {pkg for path, pkg in FILES.items() if not os.path.exists(path)})
    if missing:
        raise BuildError("the rescue build needs tools this machine lacks",
                         "install the Debian packages: " + " ".join(missing))
    if os.geteuid() != 0:
        raise BuildError("the rescue build must run as root",
                         "it installs Debian packages into a new root (mmdebstrap) and "
                         "runs chroot; try sudo")


def release() -> str:
    """The host's Debian codename (bookworm...), from /etc/os-release."""
    try:
        lines = Path("/etc/os-release").read_text().splitlines()
    except OSError as e:
        raise BuildError("cannot read /etc/os-release", "the build runs on Debian") from e
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    codename = values.get("VERSION_CODENAME", "").strip('"')
    if values.get("ID", "").strip('"') != "debian" or not codename:
        raise BuildError("the rescue build needs a Debian host (its apt sources and "
                         "signed boot loaders)", "build on Debian 12 or later")
    return codename


def _entries_deb822(text: str) -> list[tuple[str, str, str]]:
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.strip() and not line.startswith("#") and ":" in line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                found.append((uri, suite, fields.get("components", "main")))
    return found


def _entries_oneline(text: str) -> list[tuple[str, str, str]]:
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] != ["deb"]:
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 3:
            found.append((words[0], words[1], " ".join(words[2:])))
    return found


def sources(codename: str, etc: str = "/etc/apt") -> list[str]:
    """The host's apt lines for its own Debian release (`codename` and codename-updates,
    -security...), as one-line entries; other vendors' repositories are left out."""
    base = Path(etc)
    files = [base / "sources.list", *sorted((base / "sources.list.d").glob("*"))]
    entries: list[tuple[str, str, str]] = []
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        entries += _entries_deb822(text) if f.suffix == ".sources" else (
            _entries_oneline(text) if f.suffix == ".list" or f.name == "sources.list" else [])
    lines = [f"deb {uri} {suite} {comps}" for uri, suite, comps in entries
             if suite == codename or suite.startswith(codename + "-")]
    if not lines:
        raise BuildError(f"no apt source for Debian {codename} in {etc}",
                         f"add e.g. 'deb http://deb.debian.org/debian {codename} main'")
    return list(dict.fromkeys(lines))


def checkout(start: str | None = None) -> Path:
    """The source checkout twofold runs from (it holds pyproject.toml and src/twofold)."""
    here = Path(start) if start else Path(__file__).resolve().parents[3]
    if (here / "pyproject.toml").is_file() and (here / "src" / "twofold").is_dir():
        return here
    raise BuildError(f"{here} is not a twofold source checkout",
                     "build rescue media from a checkout: --source DIR")


def _constraints() -> str:
    """name==version of every distribution installed here except twofold itself."""
    pins = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != "twofold":
            pins.add(f"{name}=={dist.version}")
    return "\n".join(sorted(pins)) + "\n"


def build_wheels(source: Path, dest: Path) -> None:
    """Wheels of the checkout and its dependencies (the versions installed here) in
    `dest`, through pip (its cache makes a rebuild quick)."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = dest / "constraints.txt"
    pins.write_text(_constraints())
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
           "-w", str(dest), "-c", str(pins), str(source)]
    env = {**os.environ, "TWOFOLD_REQUIRE_NATIVE": "1"}
    r = step(cmd, env=env)
    if r.returncode != 0:
        raise BuildError("building the wheels failed: " + _tail(r.stderr or r.stdout),
                         "the checkout must build (make lint) and pip must reach its index")
    if not any(dest.glob("twofold-*.whl")):
        raise BuildError("pip made no twofold wheel", f"see {dest}")


def wheel_digest(path: Path) -> str:
    """A wheel's content hash: every member's name and bytes (not the zip's dates)."""
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            h.update(name.encode() + b"\0" + hashlib.sha256(z.read(name)).digest())
    return h.hexdigest()


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


STEP_WATCHERS: list[Callable[[str, object], None]] = []
"""Told ("group", pid) as each step starts in its own process group and ("ungroup", pid)
when it ended: the reaper of the build in progress (reaper.py), which kills the steps
under way when the build dies."""


def step(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run one step in its own process group (so a dying build's reaper can kill it and
    all it started); an exception here (Ctrl-C) kills that group before it goes on."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, **kw)
    for tell in STEP_WATCHERS:
        tell("group", p.pid)
    try:
        out, err = p.communicate()
    except BaseException:
        with contextlib.suppress(OSError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise
    finally:
        for tell in STEP_WATCHERS:
            tell("ungroup", p.pid)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def run(cmd: list[str], what: str, **kw: Any) -> str:
    """Run a build step; BuildError naming the step and the end of its output on
    failure."""
    r = step(cmd, **kw)
    if r.returncode != 0:
        raise BuildError(f"{what} failed (exit {r.returncode}): {_tail(r.stderr or r.stdout)}",
                         "see the message above; a rerun starts this step again")
    return str(r.stdout)
