"""A drive pulled during a backup started from the panel: the job fails with the CLI's
message, and the panel stays up and says so (a real ext4 drive, root only)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.backup.test_drive_checks import ext4_drive
from tests.drives import IS_ROOT, NOT_ROOT_REASON
from twofold.jobs.live import listing
from twofold.web.app import Panel, create_app
from twofold.web.security import Secret

pytestmark = pytest.mark.skipif(not IS_ROOT, reason=f"real drives {NOT_ROOT_REASON}")


def test_a_drive_pulled_mid_run_fails_the_job_and_the_panel_stays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    state = tmp_path / "state"
    monkeypatch.setenv("TWOFOLD_STATE_DIR", str(state))
    src = tmp_path / "home" / "Documents"
    block = os.urandom(64 * 1024)
    for i in range(1500):  # folders too: each is made on the drive as the run goes
        folder = src / f"d{i // 10:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:04d}.bin").write_bytes(i.to_bytes(4, "big") + block)
    mnt = tmp_path / "BACKUP"
    config = tmp_path / "config.toml"
    config.write_text(f'[sets.docs]\nsources = ["{src}"]\ntarget = "{mnt}"\n')
    panel = Panel(config, state, Secret({"testserver"}))
    with ext4_drive(tmp_path, mnt, "256M"), \
            TestClient(create_app(panel, watch_every=0)) as client:
        client.get(f"/?token={panel.secret.token}")
        r = client.post("/jobs/docs/run", data={"csrf": panel.secret.csrf})
        assert r.status_code == 200 and "Backup of docs started" in r.text
        copied = mnt / "twofold/docs/current/Documents"
        deadline = time.monotonic() + 120
        while not (copied.is_dir() and any(copied.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.01)
        running = [i for i in listing(state) if i.job == "docs"]
        assert running and running[0].state == "running", "the run ended before the pull"
        subprocess.run(["umount", "-l", str(mnt)], check=True)
        panel.runner.wait(120)
        (item,) = [i for i in listing(state) if i.job == "docs"]
        assert item.state == "failed" and item.detail, item
        assert item.log and f"result: failed ({item.detail})" in Path(item.log).read_text()
        page = client.get("/")
        assert page.status_code == 200 and item.detail in page.text
        mnt.mkdir(exist_ok=True)  # for the fixture's unmount (already lazily done)
