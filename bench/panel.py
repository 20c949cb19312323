"""The panel's speed goals (issue 18): time to first paint of Home in headless Chromium with
20 jobs and a set of 100,000 files (<= 300 ms), listing a folder of 10,000 entries as of
an old run (<= 500 ms), and the panel's memory when idle (<= 80 MB).

Makes a set of 100,000 files (gentree's tree plus one folder of 10,000 files), backs it up
twice (1 % changed in between) so run 1 is an old run, adds 19 small sets (20 jobs), starts
`twofold panel --no-browser`, and measures with Debian's chromium through Playwright.
Usage: .venv/bin/python bench/panel.py [--workdir DIR] [--turns 7]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gentree import generate, mutate

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
BIG_FOLDER = "Big folder"


def backup(src: list[str], drive: str, name: str) -> None:
    """One run of set `name`, through the engine as the CLI runs it."""
    from twofold.backup.engine import BackupOptions
    from twofold.backup.engine import backup as run
    from twofold.core.progress import NullProgress
    from twofold.jobs.clock import SystemClock

    run(src, drive, name, BackupOptions(), SystemClock(), NullProgress())


def prepare(work: str) -> str:
    """The world on disk; returns the config path."""
    src, drive = os.path.join(work, "home"), os.path.join(work, "drive")
    os.makedirs(drive)
    generate(os.path.join(src, "Files"), 90_000, 150 << 20, 18)
    big = os.path.join(src, "Files", BIG_FOLDER)
    os.makedirs(big)
    for n in range(10_000):
        with open(os.path.join(big, f"file {n:05}.txt"), "w") as fh:
            fh.write(f"{n}\n")
    t = time.monotonic()
    backup([os.path.join(src, "Files")], drive, "files")
    print(f"first run of 100,000 files: {time.monotonic() - t:.1f} s", flush=True)
    mutate(os.path.join(src, "Files"), 0.01, 18)
    backup([os.path.join(src, "Files")], drive, "files")
    lines = [f'[sets.files]\nsources = ["{src}/Files"]\ntarget = "{drive}"\n'
             'schedule = "daily"\n']
    for n in range(19):
        folder = os.path.join(src, f"small{n}")
        os.makedirs(folder)
        with open(os.path.join(folder, "a.txt"), "w") as fh:
            fh.write("a\n")
        backup([folder], drive, f"small{n}")
        lines.append(f'[sets.small{n}]\nsources = ["{folder}"]\ntarget = "{drive}"\n'
                     'schedule = "weekly"\n')
    config = os.path.join(work, "config.toml")
    with open(config, "w") as fh:
        fh.write("\n".join(lines))
    return config


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB."""
    with open(f"/proc/{pid}/status") as fh:
        kb = int(re.search(r"VmRSS:\s+(\d+)", fh.read()).group(1))  # type: ignore[union-attr]
    return kb / 1024


def paint_ms(page: Any, url: str) -> float:
    """Navigation start to first contentful paint, ms."""
    page.goto(url, wait_until="load")
    return float(page.evaluate("""new Promise(done => new PerformanceObserver(
        (list, obs) => { obs.disconnect(); done(list.getEntries()[0].startTime); })
        .observe({type: 'paint', buffered: true}))"""))


def main(argv: list[str] | None = None) -> int:
    """Build the world, measure, print the figures against the goals."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/var/tmp/twofold-bench-panel")
    ap.add_argument("--turns", type=int, default=7)
    ap.add_argument("--reuse", action="store_true",
                    help="Measure again on the world an earlier run left in --workdir.")
    a = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    config = os.path.join(a.workdir, "config.toml")
    if not (a.reuse and os.path.exists(config)):
        shutil.rmtree(a.workdir, ignore_errors=True)
        os.makedirs(a.workdir)
        config = prepare(a.workdir)
    env = {**os.environ, "TWOFOLD_STATE_DIR": os.path.join(a.workdir, "state")}
    panel = subprocess.Popen([sys.executable, "-m", "twofold", "--config", config, "panel",
                              "--no-browser"], stdout=subprocess.PIPE, text=True, env=env)
    assert panel.stdout is not None
    url = next(m.group(1) for line in panel.stdout
               if (m := re.search(r"(http://\S+\?token=\S+)", line)))
    root = url.split("?")[0].rstrip("/")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(url)
            home = [paint_ms(page, root + "/") for _ in range(a.turns)]
            jobs = page.locator("tbody tr").count()
            home_server = []
            cookie = next(c for c in page.context.cookies())
            for _ in range(a.turns):
                req = urllib.request.Request(root + "/", headers={
                    "Cookie": f"{cookie['name']}={cookie['value']}"})
                t = time.perf_counter()
                with urllib.request.urlopen(req) as r:
                    r.read()
                home_server.append((time.perf_counter() - t) * 1000)
            folder = f"{root}/browse?set=files&run=1&path=Files/{BIG_FOLDER.replace(' ', '+')}"
            listing, server = [], []
            for _ in range(a.turns):
                t = time.perf_counter()
                page.goto(folder, wait_until="load")
                listing.append((time.perf_counter() - t) * 1000)
            entries = int(re.sub(r"\D", "", re.search(
                r"([\d,]+) entries", page.locator(".crumbs").inner_text()).group(1)))  # type: ignore[union-attr]
            for _ in range(a.turns):
                req = urllib.request.Request(folder, headers={
                    "Cookie": f"{cookie['name']}={cookie['value']}"})
                t = time.perf_counter()
                with urllib.request.urlopen(req) as r:
                    r.read()
                server.append((time.perf_counter() - t) * 1000)
            browser.close()
        time.sleep(5)
        idle = rss_mb(panel.pid)
    finally:
        panel.terminate()
        panel.wait(30)
    med = statistics.median
    print(f"Home, {jobs} jobs (one set of 100,000 files): first contentful paint median "
          f"{med(home):.0f} ms (min {min(home):.0f}, max {max(home):.0f}); the server's answer "
          f"alone {med(home_server):.0f} ms; goal <= 300 ms")
    print(f"Folder of {entries:,} entries as of run 1 (first page of 200 shown): page "
          f"loaded in Chromium median "
          f"{med(listing):.0f} ms (min {min(listing):.0f}); the server's answer alone "
          f"{med(server):.0f} ms; goal <= 500 ms")
    print(f"Panel idle after these pages: {idle:.0f} MB resident; goal <= 80 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
