"""The panel end to end: `twofold panel` as a real server, clicked through in Debian's
headless Chromium driven by Playwright (never Playwright's own browser download).

Set TWOFOLD_SCREENSHOTS=docs/img to keep a screenshot of every page (light and dark)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import OLD, World

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1366, 768

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)",
                allow_module_level=True)


def start_panel(config: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """`twofold panel --no-browser`; the process and the address it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "twofold", "--config", str(config), "panel", "--no-browser",
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"(http://127\.0\.0\.1:\d+/\?token=\S+)", line)
        if found:
            return proc, found.group(1)
    said = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"the panel printed no address: {said}")


@pytest.fixture
def server(world: World) -> Iterator[str]:
    """A running panel on the world's config; its address with the token."""
    proc, url = start_panel(world.config)
    yield url
    proc.terminate()
    proc.wait(30)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium, with evil.example resolving to this machine (DNS rebinding)."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *FLAGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """A page that opened the address the panel printed."""
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(server)
    yield pg
    context.close()


def base(url: str) -> str:
    """The panel's address without the token."""
    return url.split("?", 1)[0].rstrip("/")


def test_home_shows_the_overdue_job(page: Any) -> None:
    row = page.locator("#job-pics")
    assert "overdue" in row.locator(".state").inner_text()
    assert "not connected" in row.inner_text()
    colour = row.locator(".state").evaluate("e => getComputedStyle(e).color")
    red, green, _ = (int(v) for v in re.findall(r"\d+", colour)[:3])
    assert red > 2 * green, colour
    assert "Not fully protected" in page.locator(".summary").inner_text()


def freeze_when_running(job: str, timeout: float = 60.0) -> int:
    """Stop the process group of `job`'s run (SIGSTOP) as soon as its live entry says it
    is running, so a page can be looked at mid-run however fast this machine copies; the
    process id, for SIGCONT."""
    from twofold.jobs.live import listing

    state = Path(os.environ["TWOFOLD_STATE_DIR"])
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for item in listing(state):
            if item.job == job and item.state == "running":
                os.killpg(item.pid, signal.SIGSTOP)  # the run is a session of its own
                return item.pid
            if item.job == job:
                raise AssertionError(f"the run of {job} ended {item.state}: {item.detail}")
        time.sleep(0.005)
    raise AssertionError(f"no run of {job} started within {timeout:.0f} s")


def test_back_up_now_shows_live_progress_to_the_end(page: Any, world: World, browser: Any,
                                                    server: str) -> None:
    block = os.urandom(192 * 1024)
    for n in range(1000):  # 190 MB: the run is frozen mid-copy, then let go
        (world.src / f"bulk-{n:03}.bin").write_bytes(n.to_bytes(4, "big") + block)
    other = browser.new_context().new_page()  # a second browser, never reloaded
    other.goto(server)
    assert other.locator("#live-section").is_hidden()
    page.locator("#job-docs").get_by_role("button", name="Back up now").click()
    pid = freeze_when_running("docs")
    try:
        page.wait_for_selector("#live .job-live.running progress", timeout=60_000)
        assert "Backup docs" in page.locator("#live").inner_text()
        other.wait_for_selector("#live .job-live.running progress", timeout=60_000)
        keep = os.environ.get("TWOFOLD_SCREENSHOTS")
        if keep:
            page.screenshot(path=str(Path(keep) / "panel-live-light.png"))
    finally:
        os.killpg(pid, signal.SIGCONT)
    page.locator("#live .job-live:not(.running)", has_text="Backup docs").wait_for(
        timeout=120_000)  # by the event stream
    assert page.locator("#live .job-live .state").first.inner_text() == "ok", \
        page.locator("#live").inner_text()
    other.wait_for_selector("#live .job-live.ok", timeout=60_000)
    assert "Backup docs" in other.locator("#live").inner_text()
    other.context.close()
    page.goto(page.url.split("?")[0] + "browse?set=docs&path=Documents")
    assert page.locator("th[scope=row]", has_text="bulk-000.bin").count() == 1
    assert "1,002 entries" in page.locator(".crumbs").inner_text()


def test_browse_an_older_run_and_restore_a_file(page: Any, world: World) -> None:
    letter = world.src / "letter.txt"
    page.get_by_role("link", name="Browse and restore").click()
    page.get_by_label("as of run").select_option("1")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("link", name="Documents/").click()
    row = page.locator("tr", has_text="letter.txt")
    assert f"{len(OLD)} B" in row.inner_text()
    row.get_by_role("link", name="Restore letter.txt").click()
    page.get_by_label("To its place").check()
    page.get_by_role("button", name="Restore").click()
    page.wait_for_selector("#live .job-live.ok", timeout=60_000)
    assert letter.read_bytes() == OLD
    kept = list(world.src.glob("letter.txt.before-restore-*"))
    assert len(kept) == 1 and kept[0].read_bytes() != OLD


def test_verify_an_image(page: Any, world: World) -> None:
    from twofold.core.progress import NullProgress
    from twofold.image.create import create
    from twofold.jobs.clock import SystemClock

    create(str(world.disk), str(world.drive), "disk-1", 3, None, False, NullProgress(),
           SystemClock())
    page.get_by_role("link", name="Images").click()
    page.get_by_role("button", name="Verify disk-1").click()
    # this job's own entry (an earlier test's finished job may be listed too)
    page.locator("#live .job-live.ok", has_text="Verify disk-1").wait_for(timeout=60_000)
    sync_api.expect(page.locator("#live")).to_contain_text("OK: 1 image,")  # a reload
    # on the end of the job may be under way: retried until it shows


def test_an_encrypted_store_opens_with_its_passphrase(page: Any, world: World) -> None:
    from twofold.blobs.remote import open_target
    from twofold.core.progress import NullProgress
    from twofold.image.create import create
    from twofold.jobs.clock import SystemClock
    from twofold.vault.objects import make_keys

    sealed = make_keys(open_target(str(world.drive)), b"words for the panel")
    create(str(world.disk), sealed, "disk-1", 3, None, False, NullProgress(), SystemClock())
    page.get_by_role("link", name="Images").click()
    page.get_by_text("This store is encrypted").wait_for()
    assert page.get_by_role("button", name="Verify disk-1").count() == 0
    page.get_by_label("Passphrase").fill("not the words")
    page.get_by_role("button", name="Open").click()
    assert "wrong passphrase" in page.locator(".banner.bad").inner_text()
    page.get_by_label("Passphrase").fill("words for the panel")
    page.get_by_role("button", name="Open").click()
    page.get_by_role("button", name="Verify disk-1").click()
    page.locator("#live .job-live.ok", has_text="Verify disk-1").wait_for(timeout=60_000)
    sync_api.expect(page.locator("#live")).to_contain_text("OK: 1 image,")  # a reload
    # on the end of the job may be under way: retried until it shows
    page.get_by_role("button", name="Lock this store").click()
    page.get_by_label("Passphrase").wait_for()
    assert page.get_by_role("button", name="Verify disk-1").count() == 0


def test_no_token_and_a_foreign_host_are_refused(browser: Any, server: str) -> None:
    context = browser.new_context()
    pg = context.new_page()
    answer = pg.goto(base(server) + "/")
    assert answer.status == 403 and "no valid token" in pg.content()
    port = re.search(r":(\d+)", server.split("//", 1)[1]).group(1)  # type: ignore[union-attr]
    answer = pg.goto(f"http://evil.example:{port}/?token={server.split('token=')[1]}")
    assert answer.status == 421 and "refused" in pg.content()
    context.close()
    try:
        urllib.request.urlopen(base(server) + "/settings", timeout=30)
    except urllib.error.HTTPError as err:
        assert err.code == 403
    else:
        raise AssertionError("a request without the token was answered")


def test_the_port_taken_is_said_and_another_used(server: str, world: World) -> None:
    port = base(server).rsplit(":", 1)[1]
    proc, url = start_panel(world.config, "--port", port)
    try:
        assert f":{port}/" not in url
        assert proc.stderr is not None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"port {port} is taken" in err


PAGES = [("home", "/"), ("runs", "/runs"), ("browse", "/browse?set=docs&run=1&path=Documents"),
         ("images", "/images"), ("drives", "/drives"), ("settings", "/settings"),
         ("restore", "/restore?set=docs&run=1&path=Documents/letter.txt")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_a_laptop_screen(browser: Any, server: str, world: World,
                                          scheme: str) -> None:
    from twofold.core.progress import NullProgress
    from twofold.image.create import create
    from twofold.jobs.clock import SystemClock

    create(str(world.disk), str(world.drive), "disk-1", 3, None, False, NullProgress(),
           SystemClock())
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT},
                                  color_scheme=scheme)
    pg = context.new_page()
    pg.goto(server)
    keep = os.environ.get("TWOFOLD_SCREENSHOTS")
    for name, path in PAGES:
        pg.goto(base(server) + path)
        assert pg.locator("h1").count() == 1
        wide = pg.evaluate("document.documentElement.scrollWidth")
        assert wide <= WIDTH, f"{name} is {wide} px wide"
        unlabelled = pg.evaluate("""[...document.querySelectorAll('input,select,textarea')]
            .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length)
                         && !e.getAttribute('aria-label')).map(e => e.name)""")
        assert unlabelled == [], f"{name}: fields without a label: {unlabelled}"
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            pg.screenshot(path=str(Path(keep) / f"panel-{name}-{scheme}.png"))
    pg.keyboard.press("Tab")
    assert pg.evaluate("document.activeElement.textContent") == "Skip to content"
    context.close()



def test_back_up_now_with_the_keyboard_alone(page: Any) -> None:
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#job-docs') !== null && "
                         "document.activeElement.tagName === 'BUTTON'"):
            break
    else:
        raise AssertionError("Tab never reached the Back up now button of docs")
    assert page.evaluate("document.activeElement.textContent") == "Back up now (docs)"
    page.keyboard.press("Enter")
    page.wait_for_selector("#live .job-live.ok", timeout=60_000)
    assert "Backup docs" in page.locator("#live").inner_text()
