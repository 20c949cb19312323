"""The panel in process (Starlette's TestClient): who may talk to it, and every page and
action on a real backup set."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.web.conftest import NEW, OLD, World
from twofold.jobs.live import listing
from twofold.jobs.state import State
from twofold.web.app import Panel, create_app
from twofold.web.security import Secret


@pytest.fixture
def panel(world: World) -> Panel:
    """A panel on the world's config, answering to the test client's host."""
    return Panel(world.config, world.state, Secret({"testserver"}, cookie="tp"))


@pytest.fixture
def client(panel: Panel) -> Iterator[TestClient]:
    """A browser that opened the printed address (so it holds the cookie)."""
    with TestClient(create_app(panel, watch_every=0), follow_redirects=False) as c:
        r = c.get(f"/?token={panel.secret.token}")
        assert r.status_code == 303 and r.headers["location"] == "/"
        yield c
    panel.runner.wait(60)


def post(client: TestClient, panel: Panel, url: str, **data: str) -> str:
    """POST a form as the page does; the note shown on the page it leads to."""
    r = client.post(url, data={"csrf": panel.secret.csrf, **data})
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"]).text
    notes = re.findall(r'class="banner (?:good|bad|warn)"[^>]*>([^<]*)<', page)
    return " ".join(notes)


def wait_done(panel: Panel, job: str) -> str:
    """Wait for the panel's tasks, then the last result of `job`'s live entry."""
    panel.runner.wait(120)
    for _ in range(600):
        items = [i for i in listing(panel.state_root) if i.job == job]
        if items and items[0].state != "running":
            return f"{items[0].state}: {items[0].detail}"
        time.sleep(0.1)
    raise AssertionError(f"{job} did not finish")


def test_no_token_is_refused(panel: Panel) -> None:
    with TestClient(create_app(panel, watch_every=0)) as c:
        r = c.get("/")
        assert r.status_code == 403 and "token" in r.text
        assert c.get("/?token=wrong").status_code == 403
        assert c.get("/static/panel.css").status_code == 403
        assert c.get("/", headers={"x-twofold-token": panel.secret.token}).status_code == 200


def test_foreign_host_is_refused(client: TestClient, panel: Panel) -> None:
    r = client.get("/", headers={"host": "evil.example:80"})
    assert r.status_code == 421 and "evil.example" in r.text
    r = client.get(f"/?token={panel.secret.token}", headers={"host": "evil.example"})
    assert r.status_code == 421


def test_post_needs_the_forgery_field(client: TestClient, panel: Panel,
                                      world: World) -> None:
    before = world.config.read_text()
    r = client.post("/settings/raw", data={"text": "exclude = []\n"})
    assert r.status_code == 403 and "anti-forgery" in r.text
    r = client.post("/settings/raw", data={"text": "x", "csrf": panel.secret.csrf},
                    headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    assert world.config.read_text() == before
    assert client.put("/settings/raw").status_code == 405


def test_home_shows_the_overdue_job(client: TestClient) -> None:
    page = client.get("/").text
    assert "Not fully protected" in page
    row = page[page.index('id="job-pics"'):]
    row = row[:row.index("</tr>")]
    assert "overdue" in row and "not connected" in row
    docs = page[page.index('id="job-docs"'):]
    assert "current" in docs[:docs.index("</tr>")]
    assert "Back up now" in page and "Make image now" in page


def test_every_page_renders(client: TestClient) -> None:
    for url in ("/", "/runs", "/browse", "/images", "/drives", "/settings",
                "/restore?set=docs&run=1&path=Documents/letter.txt",
                "/versions?set=docs&path=Documents/letter.txt"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert "<main" in r.text and "banner bad" not in r.text, url


def test_runs_and_their_log(client: TestClient, panel: Panel, world: World) -> None:
    page = client.get("/runs").text
    assert page.count("complete") >= 2
    log = State(world.state).new_log("docs", time.time_ns())
    log.write_text("12:00:00 copying\nresult: ok\n")
    page = client.get("/runs").text
    assert log.name in page
    assert "result: ok" in client.get(f"/runs/docs/log/{log.name}").text
    assert "no log" in client.get("/runs/pics/log/" + log.name,
                                  follow_redirects=True).text


def test_browse_as_of_the_older_run(client: TestClient) -> None:
    top = client.get("/browse?set=docs&run=1").text
    assert "Documents/" in top
    page = client.get("/browse?set=docs&run=1&path=Documents").text
    assert "letter.txt" in page and "sub/" in page
    assert f"{len(OLD)} B" in page
    assert f"{len(NEW)} B" in client.get("/browse?set=docs&run=2&path=Documents").text
    assert client.get("/download?set=docs&run=1&path=Documents/letter.txt").content == OLD
    assert client.get("/download?set=docs&run=2&path=Documents/letter.txt").content == NEW
    versions = client.get("/versions?set=docs&path=Documents/letter.txt").text
    assert versions.count("Restore this version") == 2


def test_browse_refuses_a_path_climbing_out(client: TestClient) -> None:
    page = client.get("/browse?set=docs&run=1&path=Documents/../..").text
    assert "leads out of the chosen folder" in page


def test_restore_to_its_place_keeps_what_is_there(client: TestClient, panel: Panel,
                                                  world: World) -> None:
    letter = world.src / "letter.txt"
    letter.write_bytes(b"edited since\n")
    note = post(client, panel, "/restore", set="docs", run="1",
                path="Documents/letter.txt", where="place")
    assert "Restoring Documents/letter.txt" in note
    assert wait_done(panel, "restore-docs").startswith("ok")
    assert letter.read_bytes() == OLD
    aside = list(world.src.glob("letter.txt.before-restore-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"edited since\n"


def test_restore_a_folder_elsewhere(client: TestClient, panel: Panel, world: World) -> None:
    dest = world.root / "restored"
    post(client, panel, "/restore", set="docs", run="2", path="Documents/sub",
         where="folder", folder=str(dest))
    assert wait_done(panel, "restore-docs").startswith("ok")
    assert (dest / "Documents" / "sub" / "notes.md").read_text() == "notes\n"


def test_restore_refuses_an_escaping_path(client: TestClient, panel: Panel,
                                          world: World) -> None:
    dest = world.root / "restored"
    note = post(client, panel, "/restore", set="docs", run="1",
                path="Documents/../../../etc/passwd", where="folder", folder=str(dest))
    assert "leads out of the chosen folder" in note
    note = post(client, panel, "/restore", set="docs", run="1", path="/etc/passwd",
                where="folder", folder=str(dest))
    assert "not a path inside the backup" in note
    assert not dest.exists()
    assert listing(panel.state_root) == []


def test_back_up_now_runs_to_the_end(client: TestClient, panel: Panel, world: World) -> None:
    (world.src / "new.txt").write_text("new\n")
    note = post(client, panel, "/jobs/docs/run")
    assert "Backup of docs started" in note
    for _ in range(600):
        items = [i for i in listing(world.state) if i.job == "docs"]
        if items and items[0].state != "running":
            break
        time.sleep(0.1)
    assert items[0].state == "ok", items[0]
    assert State(world.state).record("docs").result == "ok"
    events = client.get("/events?once=1").text
    assert events.startswith("event: live") and "Backup docs" in events
    assert "new.txt" in client.get("/browse?set=docs&path=Documents").text


def test_a_job_whose_drive_is_away_is_not_started(client: TestClient, panel: Panel) -> None:
    note = post(client, panel, "/jobs/pics/run")
    assert "not connected" in note
    assert listing(panel.state_root) == []


def test_verify_an_image(client: TestClient, panel: Panel, world: World) -> None:
    from twofold.core.progress import NullProgress
    from twofold.image.create import create
    from twofold.jobs.clock import SystemClock

    create(str(world.disk), str(world.drive), "disk-1", 3, None, False, NullProgress(),
           SystemClock())
    page = client.get("/images").text
    assert "disk-1" in page and "Deleting it frees" in page
    post(client, panel, "/images/verify", store=str(world.drive), image="disk-1")
    result = wait_done(panel, "verify-disk-1")
    assert result.startswith("ok: OK: 1 image,"), result
    note = post(client, panel, "/images/verify", store="/etc", image="disk-1")
    assert "not a connected image store" in note


def test_settings_keep_comments_and_refuse_a_bad_value(client: TestClient, panel: Panel,
                                                       world: World) -> None:
    note = post(client, panel, "/settings/job", kind="sets", name="docs",
                sources=str(world.src), target=str(world.drive), exclude="*.iso\n*.tmp",
                schedule="weekly", default_excludes="true")
    assert "Saved set docs" in note
    text = world.config.read_text()
    assert "# my twofold config" in text and "# the documents" in text
    assert '"*.iso"' in text and 'schedule = "weekly"' in text
    note = post(client, panel, "/settings/exclude", exclude="*.iso\n\ncache/\n")
    assert "Saved what every set leaves out" in note
    text = world.config.read_text()
    assert 'exclude = ["*.iso", "cache/"]' in text and "# the documents" in text
    r = client.post("/settings/job", data={
        "csrf": panel.secret.csrf, "kind": "sets", "name": "docs", "sources": "x",
        "schedule": "every blue moon"})
    assert r.status_code == 200 and "Not saved" in r.text and "line" in r.text
    assert world.config.read_text() == text


def test_a_config_error_shows_its_line_and_the_panel_keeps_running(
        client: TestClient, panel: Panel, world: World) -> None:
    world.config.write_text(world.config.read_text() + "\n[sets.docs2]\nsourcs = []\n")
    page = client.get("/").text
    assert "The config has an error" in page and "sourcs" in page and "line" in page
    r = client.post("/settings/raw", data={"csrf": panel.secret.csrf, "text": "a = [\n"})
    assert r.status_code == 200 and "Not saved" in r.text
    assert client.get("/settings").status_code == 200
    good = world.config.read_text().replace("sourcs", "sources")
    assert "Saved" in post(client, panel, "/settings/raw", text=good)
    assert "The config has an error" not in client.get("/").text


def test_bad_paths_in_forms(client: TestClient, panel: Panel) -> None:
    assert "no job named" in post(client, panel, "/jobs/nope/run")
    assert "not a connected image store" in post(client, panel, "/images/restore",
                                                 store="x", image="y", dest="/tmp/d.img")
    r = client.get("/download?set=docs&run=1&path=Documents/missing.txt",
                   follow_redirects=True)
    assert "never backed up" in r.text


def test_static_htmx_is_served(client: TestClient) -> None:
    r = client.get("/static/htmx.min.js")
    assert r.status_code == 200 and "htmx" in r.text[:2000]


def test_restore_place_is_the_runs_source(world: World) -> None:
    from twofold.backup.inspect import list_runs
    from twofold.jobs.browse import place_of

    run = list_runs(str(world.drive), "docs")[0]
    assert Path(place_of(run, "Documents/letter.txt")) == world.src.parent


def test_image_restore_keeps_the_clis_refusals(client: TestClient, panel: Panel,
                                               world: World) -> None:
    from twofold.core.progress import NullProgress
    from twofold.image.create import create
    from twofold.jobs.clock import SystemClock

    create(str(world.disk), str(world.drive), "disk-1", 3, None, False, NullProgress(),
           SystemClock())
    small = world.root / "small.img"
    small.write_bytes(b"keep me" * 100)
    post(client, panel, "/images/restore", store=str(world.drive), image="disk-1",
         dest=str(small))
    result = wait_done(panel, "restore-disk-1")
    assert result.startswith("failed") and "too small" in result, result
    assert small.read_bytes() == b"keep me" * 100
    copy = world.root / "copy.img"
    post(client, panel, "/images/restore", store=str(world.drive), image="disk-1",
         dest=str(copy))
    assert wait_done(panel, "restore-disk-1").startswith("ok")
    assert copy.read_bytes() == world.disk.read_bytes()


def test_delete_an_image_needs_the_confirmation(client: TestClient, panel: Panel,
                                                world: World) -> None:
    from twofold.core.progress import NullProgress
    from twofold.image.create import create
    from twofold.image.manage import list_images
    from twofold.jobs.clock import SystemClock

    create(str(world.disk), str(world.drive), "disk-1", 3, None, False, NullProgress(),
           SystemClock())
    note = post(client, panel, "/images/delete", store=str(world.drive), image="disk-1")
    assert "was not deleted" in note and len(list_images(str(world.drive))) == 1
    post(client, panel, "/images/delete", store=str(world.drive), image="disk-1",
         confirm="yes")
    assert wait_done(panel, "delete-disk-1").startswith("ok")
    assert list_images(str(world.drive)) == []


def test_a_large_folder_is_shown_a_page_at_a_time(client: TestClient, world: World) -> None:
    from tests.web.conftest import run_backup

    many = world.src / "many"
    many.mkdir()
    for n in range(250):
        (many / f"f{n:03}.txt").write_text(str(n))
    run_backup(world.src, world.drive)
    page = client.get("/browse?set=docs&path=Documents/many").text
    assert "250 entries" in page and "Entries 1–200 of 250" in page
    assert "f199.txt" in page and "f200.txt" not in page
    page = client.get("/browse?set=docs&path=Documents/many&page=2").text
    assert "Entries 201–250 of 250" in page and "f200.txt" in page and "f199.txt" not in page
    assert "must be a number" in client.get("/browse?set=docs&page=x").text


def test_a_drive_gone_when_the_run_starts_fails_with_the_clis_words(
        client: TestClient, panel: Panel, world: World) -> None:
    note = post(client, panel, "/jobs/docs/run")
    away = world.root / "drive-away"
    world.drive.rename(away)  # gone before the run's process looks for it
    panel.runner.wait(120)
    (item,) = [i for i in listing(world.state) if i.job == "docs"]
    assert "started" in note and item.state == "failed"
    assert "is not connected" in item.detail, item.detail
    page = client.get("/").text  # the panel is still there and says so
    assert "Run docs" in page and "is not connected" in page


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("losetup") is None,
                    reason="needs root and losetup for a loop device")
def test_image_restore_to_a_disk_must_be_confirmed_by_its_name(
        client: TestClient, panel: Panel, world: World) -> None:
    from twofold.core.progress import NullProgress
    from twofold.image.create import create
    from twofold.jobs.clock import SystemClock

    create(str(world.disk), str(world.drive), "disk-1", 3, None, False, NullProgress(),
           SystemClock())
    backing = world.root / "loop.img"
    backing.write_bytes(b"\x5a" * (2 << 20))
    loop = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True,
                          text=True, check=True).stdout.strip()
    try:
        note = post(client, panel, "/images/restore", store=str(world.drive),
                    image="disk-1", dest=loop, confirm_name="sda")
        assert "not confirmed" in note and os.path.basename(loop) in note
        panel.runner.wait(60)
        with open(loop, "rb") as fh:
            assert fh.read(4096) == b"\x5a" * 4096  # nothing written
        post(client, panel, "/images/restore", store=str(world.drive), image="disk-1",
             dest=loop, confirm_name=os.path.basename(loop))
        assert wait_done(panel, "restore-disk-1").startswith("ok")
        with open(loop, "rb") as fh:
            assert fh.read(1 << 20) == world.disk.read_bytes()[:1 << 20]
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def test_a_drill_that_cannot_boot_says_why(client: TestClient, panel: Panel,
                                            world: World) -> None:
    from twofold.core.progress import NullProgress
    from twofold.image.create import create
    from twofold.jobs.clock import SystemClock

    create(str(world.disk), str(world.drive), "disk-1", 3, None, False, NullProgress(),
           SystemClock())
    assert "Drilling disk-1" in post(client, panel, "/images/drill", store=str(world.drive),
                                     image="disk-1")
    result = wait_done(panel, "drill-disk-1")
    assert result.startswith("failed: "), result
    assert "Error" not in result.split(":", 2)[1], result  # words, not an exception name


def test_an_encrypted_store_opens_with_the_panels_environment(
        client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from twofold.blobs.remote import open_target
    from twofold.core.progress import NullProgress
    from twofold.image.create import create
    from twofold.jobs.clock import SystemClock
    from twofold.vault.objects import make_keys

    sealed = make_keys(open_target(str(world.drive)), b"the timer's words")
    create(str(world.disk), sealed, "disk-1", 3, None, False, NullProgress(), SystemClock())
    monkeypatch.delenv("TWOFOLD_PASSPHRASE", raising=False)
    page = client.get("/images").text
    assert "This store is encrypted" in page and "disk-1" not in page
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", "the timer's words")
    page = client.get("/images").text
    assert "disk-1" in page and "This store is encrypted" not in page
