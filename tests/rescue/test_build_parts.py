"""Parts of the rescue build that need no root: the host's apt lines for its release, the
wheel digest that keys the cache, and the cleanup of what a killed build left."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from twofold.rescue import build, host, recipe
from twofold.rescue.errors import BuildError


def test_sources_keep_the_hosts_release_only(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main contrib\n"
        "deb-src http://mirror.example/debian bookworm main\n")
    (etc / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://deb.debian.org/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    (etc / "sources.list.d/node.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n"
        "Components: main\n")
    (etc / "sources.list.d/cloud.list").write_text(
        "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n")
    assert host.sources("bookworm", str(etc)) == [
        "deb http://mirror.example/debian bookworm main contrib",
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    with pytest.raises(BuildError, match="no apt source for Debian trixie"):
        host.sources("trixie", str(etc))


def test_wheel_digest_ignores_zip_dates_not_content(tmp_path: Path) -> None:
    def wheel(name: str, data: bytes, when: tuple[int, ...]) -> Path:
        p = tmp_path / name
        with zipfile.ZipFile(p, "w") as z:
            z.writestr(zipfile.ZipInfo("twofold/x.py", when), data)  # type: ignore[arg-type]
        return p

    a = wheel("a.whl", b"x = 1\n", (2020, 1, 1, 0, 0, 0))
    b = wheel("b.whl", b"x = 1\n", (2026, 12, 4, 16, 0, 0))
    c = wheel("c.whl", b"x = 2\n", (2020, 1, 1, 0, 0, 0))
    assert host.wheel_digest(a) == host.wheel_digest(b) != host.wheel_digest(c)
    assert recipe.key("w=" + host.wheel_digest(a)) != recipe.key("w=" + host.wheel_digest(c))


def test_leftovers_of_a_killed_build_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".out.iso.tmp-{dead.pid}"
    stale.write_bytes(b"half an ISO")
    mine = tmp_path / f".out.iso.tmp-{os.getpid()}"
    mine.write_bytes(b"being written")
    work = tmp_path / f"build-{dead.pid}"
    (work / "root/etc").mkdir(parents=True)
    build._clear_stale(tmp_path, ".out.iso.tmp-")
    build._clear_stale(tmp_path, "build-")
    assert not stale.exists() and not work.exists()
    assert mine.exists()  # a running build's file is left alone


def test_the_rescue_consoles_start_screen_loads_no_cli_toolkit() -> None:
    """The guide at boot starts without typer, click, Rich or numpy: each costs seconds of
    Python start under emulation before the first screen."""
    code = ("import sys, twofold.cli.rescue_boot, twofold.cli.rescue_guide, "
            "twofold.cli.rescue_steps\n"
            "print(sorted(m for m in sys.modules if '.' not in m))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    for heavy in ("'typer'", "'click'", "'rich'", "'numpy'", "'pygments'"):
        assert heavy not in loaded, loaded
    assert "'twofold'" in loaded
