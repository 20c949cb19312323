"""Run-on-connect on a real drive: an ext4 file system on a loop device. Absent, the entry
point exits quietly; mounted, it runs only the due jobs (real backups); `udevadm test`
shows the rule starting the drive's unit; `drives` and `eject` see and release it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.jobs.conftest import Cli, json_of
from twofold.core.schedule import HOUR
from twofold.jobs.config import parse
from twofold.jobs.state import JobRecord, State
from twofold.jobs.units import udev_rule

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("losetup") or not shutil.which("mkfs.ext4"),
    reason="needs root, losetup and mkfs.ext4 for a loop-device drive")


@dataclass
class LoopDrive:
    """A file system on a loop device; attach() and mount() it as a test needs."""

    image: Path
    mnt: Path
    uuid: str
    device: str | None = None

    def attach(self) -> str:
        out = subprocess.run(["losetup", "-f", "--show", str(self.image)], check=True,
                             capture_output=True, text=True).stdout.strip()
        self.device = out
        return out

    def mount(self) -> None:
        self.mnt.mkdir(exist_ok=True)
        subprocess.run(["mount", str(self.device), str(self.mnt)], check=True)

    def mounted(self) -> bool:
        return os.path.ismount(self.mnt)


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[LoopDrive]:
    image = tmp_path / "drive.img"
    with image.open("wb") as f:
        f.truncate(32 << 20)
    d = LoopDrive(image, tmp_path / "mnt", str(uuid.uuid4()))
    subprocess.run(["mkfs.ext4", "-q", "-U", d.uuid, "-L", "TFDRIVE", str(image)],
                   check=True)
    yield d
    if d.mounted():
        subprocess.run(["umount", str(d.mnt)], check=False)
    if d.device:
        subprocess.run(["losetup", "-d", d.device], check=False)


def config(tmp_path: Path, fs_uuid: str) -> str:
    for name in ("Docs", "Pics"):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "a.txt").write_text(name)
    return (f'[sets.docs]\nsources = ["{tmp_path / "Docs"}"]\ntarget = "UUID={fs_uuid}"\n'
            'schedule = "daily"\n\n'
            f'[sets.pics]\nsources = ["{tmp_path / "Pics"}"]\ntarget = "LABEL=TFDRIVE"\n'
            'schedule = "weekly"\n\n'
            f'[sets.manual]\nsources = ["{tmp_path / "Docs"}"]\ntarget = "UUID={fs_uuid}"\n'
            f'\n[sets.elsewhere]\nsources = ["{tmp_path / "Docs"}"]\n'
            f'target = "UUID={uuid.uuid4()}"\nschedule = "daily"\n')


def test_run_on_connect_runs_only_the_due_jobs(cli: Cli, drive: LoopDrive, tmp_path: Path,
                                                state: Path) -> None:
    text = config(tmp_path, drive.uuid)
    # pics ran an hour ago (weekly: not due); docs never ran (due).
    State(state).save("pics", JobRecord(last_ok_ns=time.time_ns() - HOUR, result="ok"))

    code, out = cli(text, "run-due", "--drive", drive.uuid)  # not attached at all
    assert (code, out) == (0, "")
    drive.attach()
    code, out = cli(text, "run-due", "--drive", drive.uuid, "--wait", "0.5")  # not mounted
    assert (code, out) == (0, "") and not (state / "logs").exists()

    drive.mount()
    code, out = cli(text, "run-due", "--drive", drive.uuid, "--json")
    jobs = {j["job"]: j for j in json_of(out)["jobs"]}
    assert code == 0, out
    assert set(jobs) == {"docs", "pics"}  # manual and other drives' jobs are not touched
    assert jobs["docs"]["action"] == "ran" and jobs["docs"]["result"] == "ok"
    assert jobs["pics"]["action"] == "not due"
    assert (drive.mnt / "twofold/docs/current/Docs/a.txt").read_text() == "Docs"
    assert not (drive.mnt / "twofold/pics").exists()

    code, out = cli(text, "log", "docs")
    assert code == 0 and "result: ok" in out and "new 2" in out
    code, out = cli(text, "status", "--json", "docs")
    assert code == 0 and json_of(out)["jobs"][0]["state"] == "current"
    code, out = cli(text, "run-due", "--drive", drive.uuid, "--json")
    assert {j["action"] for j in json_of(out)["jobs"]} == {"not due"}  # docs just ran

    code, out = cli(text, "drives", "--all", "--json")
    mine = [d for d in json.loads(out) if d["uuid"] == drive.uuid]
    assert mine and mine[0]["jobs"] == ["docs", "pics", "manual"], out
    assert mine[0]["mountpoint"] == str(drive.mnt)

    code, out = cli(text, "eject", "docs")
    assert code == 0 and "safe to disconnect" in out and not drive.mounted(), out


def test_backup_of_a_set_on_an_absent_drive_says_so(cli: Cli, tmp_path: Path) -> None:
    text = config(tmp_path, str(uuid.uuid4()))
    code, out = cli(text, "backup", "docs")
    assert code == 1 and "is not connected" in out


@pytest.mark.skipif(not shutil.which("udevadm") or not shutil.which("unshare"),
                    reason="needs udevadm (apt: udev) and unshare")
def test_udevadm_runs_the_rule_for_this_uuid_only(drive: LoopDrive, tmp_path: Path) -> None:
    rule = udev_rule(parse(config(tmp_path, drive.uuid), tmp_path / "c.toml"))
    assert rule is not None
    rules = tmp_path / "90-twofold.rules"
    rules.write_text(rule)
    device = drive.attach()

    def wants(rules_text: str) -> list[str]:
        rules.write_text(rules_text)
        # `udevadm test` writes udev's database and /dev/disk links: a private mount
        # namespace keeps them, and the rule, away from the machine.
        script = ("set -e; for d in /etc/udev/rules.d /run/udev /dev/disk; do "
                  "mount -t tmpfs none $d; done; "
                  f"cp {rules} /etc/udev/rules.d/; "
                  f"udevadm test --action=add /sys/class/block/{Path(device).name}")
        made = [d for d in (Path("/run/udev"), Path("/dev/disk")) if not d.exists()]
        for d in made:
            d.mkdir()
        try:
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh",
                                "-c", script], capture_output=True, text=True, check=False)
        finally:
            for d in made:
                d.rmdir()
        assert r.returncode == 0, r.stderr
        text = r.stdout + r.stderr
        assert f"ID_FS_UUID={drive.uuid}" in text
        return [ln.split("=", 1)[1] for ln in text.splitlines()
                if ln.startswith("SYSTEMD_WANTS=")]

    assert wants(rule)[-1] == f"twofold-drive@{drive.uuid}.service"
    assert wants(rule.replace(drive.uuid, str(uuid.uuid4())).replace("TFDRIVE", "OTHER")) \
        == []
