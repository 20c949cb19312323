"""OS-change detection over two versions of a dpkg status file (and /boot), and an image
job run end to end: it records the fingerprint that later makes the next image due."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.jobs.conftest import Cli, json_of
from twofold.core.oschange import change_reason, parse_name_version_lines, parse_pacman_local
from twofold.jobs.osprobe import fingerprint
from twofold.jobs.state import State

IMAGE_DAY = int(datetime(2026, 8, 1, 12, tzinfo=UTC).timestamp()) * 10**9


def package(name: str, version: str, status: str = "install ok installed",
            arch: str = "amd64") -> str:
    return (f"Package: {name}\nStatus: {status}\nPriority: optional\nArchitecture: {arch}\n"
            f"Version: {version}\nDescription: {name}\n the {name} package\n  more text\n")


V1 = "\n".join([package("bash", "5.2.15-2+b2"), package("coreutils", "9.1-1"),
                package("vim", "2:9.0.1378-2"), package("tzdata", "2024a-0", arch="all"),
                package("oldthing", "1.0", status="deinstall ok config-files")])
V2 = "\n".join([package("bash", "5.2.15-2+b7"), package("coreutils", "9.1-1"),
                package("tzdata", "2024a-0", arch="all"), package("htop", "3.2.2-2"),
                package("oldthing", "1.0", status="deinstall ok config-files")])


def system(root: Path, status: str, kernel: bytes = b"k1", grubenv: bytes = b"a") -> Path:
    (root / "var/lib/dpkg").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text(status)
    (root / "boot/grub").mkdir(parents=True, exist_ok=True)
    (root / "boot/vmlinuz-6.1.0").write_bytes(kernel)
    (root / "boot/grub/grubenv").write_bytes(grubenv)
    return root


def test_two_dpkg_status_versions(tmp_path: Path) -> None:
    old = fingerprint(system(tmp_path / "a", V1))
    assert old["package_db"] == "dpkg"
    assert old["packages"] == {"bash:amd64": "5.2.15-2+b2", "coreutils:amd64": "9.1-1",
                               "vim:amd64": "2:9.0.1378-2", "tzdata": "2024a-0"}
    system(tmp_path / "b", V1, grubenv=b"changed at every boot")
    os.utime(tmp_path / "b/boot/vmlinuz-6.1.0",
             ns=(os.stat(tmp_path / "a/boot/vmlinuz-6.1.0").st_mtime_ns,) * 2)
    same = fingerprint(tmp_path / "b")
    assert change_reason(old, same, IMAGE_DAY) is None
    new = fingerprint(system(tmp_path / "c", V2))
    # bash upgraded, vim removed, htop added
    assert change_reason(old, new, IMAGE_DAY) == \
        "3 packages changed since the image of 2026-08-01"
    boot_only = fingerprint(system(tmp_path / "d", V1, kernel=b"k2, a new build"))
    assert change_reason(old, boot_only, IMAGE_DAY) == \
        "1 boot file changed since the image of 2026-08-01"
    assert change_reason(None, new, IMAGE_DAY) is None  # nothing recorded: age decides
    kernel = change_reason({**old, "kernel": "6.1.0-1"}, {**old, "kernel": "6.1.0-2"},
                           IMAGE_DAY)
    assert kernel == "the kernel changed (6.1.0-1 -> 6.1.0-2) since the image of 2026-08-01"


def test_rpm_and_pacman_lists() -> None:
    assert parse_pacman_local(["linux-6.9.1.arch1-1", "glibc-2.39-2", "ALPM_DB_VERSION"]) == \
        {"linux": "6.9.1.arch1-1", "glibc": "2.39-2"}
    assert parse_name_version_lines("bash.x86_64 0:5.2-1\nvim.x86_64 2:9.1-3\n") == \
        {"bash.x86_64": "0:5.2-1", "vim.x86_64": "2:9.1-3"}


@pytest.mark.skipif(not shutil.which("mkfs.ext4"), reason="needs mkfs.ext4")
def test_image_job_records_the_fingerprint(cli: Cli, tmp_path: Path, state: Path) -> None:
    disk = tmp_path / "disk.img"
    with disk.open("wb") as f:
        f.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", str(disk)], check=True)
    (tmp_path / "drive").mkdir()
    text = (f'[images.sys]\nsource = "{disk}"\ntarget = "{tmp_path / "drive"}"\n'
            'schedule = "every 90 days"\n')
    code, out = cli(text, "run-due", "--json")
    [job] = json_of(out)["jobs"]
    assert code == 0 and job["result"] == "ok", out
    fp = State(state).fingerprint("sys")
    assert fp is not None and fp["kernel"] == os.uname().release
    code, out = cli(text, "status", "--json")
    assert code == 0 and json_of(out)["jobs"][0]["state"] == "current", out
    # Pretend two packages differ from what the image saw.
    fp["packages"] = {**fp["packages"], "pretend-removed": "1", "pretend-other": "2"}
    State(state).save_fingerprint("sys", fp)
    code, out = cli(text, "status", "--json")
    status = json_of(out)["jobs"][0]
    assert status["state"] == "due", out
    assert status["reason"].startswith("2 packages changed since the image of ")
    code, out = cli(text, "run-due", "--json")  # due: a second image is made
    assert json_of(out)["jobs"][0]["action"] == "ran"
    code, out = cli(text, "status", "--json")
    assert json_of(out)["jobs"][0]["state"] == "current"
